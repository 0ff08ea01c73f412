"""Versions of a file: lookup, liveness, and the context each version's data key is bound to."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask_babel import gettext as _
from sqlalchemy import select

from portal.documents.errors import (
    NotFound,
)
from portal.documents.models import File, FileVersion
from portal.extensions import db
from portal.security.tenancy import MAX_ID

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def list_versions(file: File) -> list[FileVersion]:
    """Every version of a file, newest first."""
    return list(
        db.session.execute(
            select(FileVersion).where(FileVersion.file_id == file.id).order_by(FileVersion.number.desc())
        ).scalars()
    )


def get_version(file: File, number: int | None) -> FileVersion:
    if number is not None and not 0 < number < MAX_ID:
        raise NotFound(_("Cette version n'existe pas."))  # beyond any column: no driver overflow
    if number is None:
        version = db.session.get(FileVersion, file.current_version_id) if file.current_version_id else None
    else:
        version = db.session.execute(
            select(FileVersion).where(FileVersion.file_id == file.id, FileVersion.number == number)
        ).scalar_one_or_none()
    if version is None or version.organization_id != file.organization_id:
        raise NotFound(_("Cette version n'existe pas."))
    return version


def require_live(file: File) -> None:
    if file.purged_at is not None or file.deleted_at is not None:
        raise NotFound(_("Ce fichier est dans la corbeille ou a été détruit."))


def key_context(organization_id: int, version_uid: str, file_id: int | None) -> dict[str, str]:
    """The data key's wrapping context; the blob's AAD names the same things."""
    context = {"org": str(organization_id), "version": version_uid}
    if file_id is not None:
        context["file"] = str(file_id)
    return context


def context_of(version: FileVersion, file: File) -> dict[str, str]:
    """The context a version's key must have been made with; a key or blob moved elsewhere fails."""
    stored = version.data_key.context if version.data_key is not None else {}
    file_id = file.id if isinstance(stored, dict) and "file" in stored else None
    return key_context(file.organization_id, version.uid, file_id)
