"""The per-member "contourner la conservation" grant (``Permission.RETENTION_BYPASS``)."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.compliance.models import BypassGrant
from portal.extensions import db


def has_bypass(organization_id: int | None, user_id: int | None) -> bool:
    if organization_id is None or user_id is None:
        return False
    return (
        db.session.execute(
            select(BypassGrant.id).where(BypassGrant.user_id == user_id, BypassGrant.organization_id == organization_id)
        ).first()
        is not None
    )


def grantees(organization_id: int) -> set[int]:
    return set(
        db.session.execute(select(BypassGrant.user_id).where(BypassGrant.organization_id == organization_id)).scalars()
    )


def set_bypass(actor: Actor, member, granted: bool) -> bool:
    """Grant or withdraw the bypass of ``member`` (same organisation); journalled when it changes."""
    assert member.organization_id == actor.organization_id
    row = db.session.execute(
        select(BypassGrant).where(BypassGrant.user_id == member.id).with_for_update()
    ).scalar_one_or_none()
    if granted and row is None:
        db.session.add(
            BypassGrant(organization_id=member.organization_id, user_id=member.id, granted_by_id=actor.user_id)
        )
    elif not granted and row is not None:
        db.session.delete(row)
    else:
        return granted
    db.session.flush()
    record(
        "user.retention_bypass_changed",
        actor,
        target_type="user",
        target_id=member.id,
        target_label=member.name,
        details={"granted": granted},
    )
    return granted
