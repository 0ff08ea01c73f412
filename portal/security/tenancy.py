"""The one way to read organisation-owned rows.

Every model owned by an organisation mixes in ``OrgOwned``; every read of such a
model goes through ``scoped`` or ``get_scoped_or_404`` so that a row of another
organisation is simply not there (404), before any permission check.
"""

from __future__ import annotations

from typing import TypeVar

from flask import abort
from sqlalchemy import ForeignKey, Select, select
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from portal.extensions import db


class OrgOwned:
    @declared_attr
    def organization_id(cls) -> Mapped[int]:  # noqa: N805 - SQLAlchemy declared_attr
        return mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True, nullable=False)


T = TypeVar("T", bound=OrgOwned)
MAX_ID = 2**63  # larger ids cannot exist in any column; refusing them avoids driver overflow errors


def scoped(model: type[T], organization_id: int) -> Select[tuple[T]]:
    """A SELECT of ``model`` restricted to one organisation."""
    if not organization_id:
        raise ValueError("a scoped query needs an organisation")
    return select(model).where(model.organization_id == organization_id)


def get_scoped(model: type[T], object_id: object, organization_id: int) -> T | None:
    try:
        object_id = int(object_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not 0 < object_id < MAX_ID:
        return None
    return db.session.execute(
        scoped(model, organization_id).where(model.id == object_id)  # type: ignore[attr-defined]
    ).scalar_one_or_none()


def get_scoped_or_404(model: type[T], object_id: object, organization_id: int | None = None) -> T:
    """Load ``model`` by id within the current user's organisation, or abort with 404."""
    if organization_id is None:
        from flask_login import current_user

        if not current_user.is_authenticated:
            abort(404)
        organization_id = current_user.organization_id
    row = get_scoped(model, object_id, organization_id)
    if row is None:
        log_if_cross_organization(model, object_id)
        abort(404)
    return row


def log_if_cross_organization(model: type[T], object_id: object) -> None:
    """An id that exists in another organisation is a probe worth recording (ASVS 16.3.2).

    The visitor still gets the same 404 as for an id that exists nowhere.
    """
    from portal.audit.services import record_security_event

    try:
        exists = get_unscoped_exists(model, int(object_id))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return
    if exists:
        record_security_event(
            "security.not_found", details={"target_type": model.__tablename__, "target_id": int(object_id)}
        )


def get_unscoped_exists(model: type[T], object_id: int) -> bool:
    if not 0 < object_id < MAX_ID:
        return False
    return (
        db.session.execute(select(model.id).where(model.id == object_id)).first()  # type: ignore[attr-defined]
        is not None
    )
