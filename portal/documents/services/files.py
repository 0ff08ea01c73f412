"""Files: rename and move (display metadata only; names never reach the filesystem)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.audit.services import record
from portal.database import utcnow
from portal.documents.errors import (
    NotFound,
)
from portal.documents.models import Armoire, File, Folder
from portal.documents.services.names import required_name
from portal.documents.services.versions import require_live
from portal.extensions import db

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def rename_file(actor: Actor, file: File, name: str) -> File:
    """Rename a file (display name only: names never reach the filesystem)."""
    require_live(file)
    new = required_name(name)
    old = file.name
    if new == old:
        return file
    file.name = new
    file.updated_at = utcnow()
    db.session.flush()
    record(
        "file.renamed", actor, target_type="file", target_id=file.id, target_label=new, details={"from": old, "to": new}
    )
    return file


def move_file(actor: Actor, file: File, armoire: Armoire, folder: Folder | None) -> File:
    """Move a file to another folder (or armoire root) of the same organisation."""
    require_live(file)
    if armoire.organization_id != file.organization_id:
        raise NotFound(_("Armoire introuvable."))
    if folder is not None and (folder.armoire_id != armoire.id or folder.organization_id != file.organization_id):
        raise NotFound(_("Dossier introuvable."))
    from portal.compliance.policy import assert_move_keeps_protection, covering

    protection = covering("file", file)
    before = {"armoire": file.armoire_id, "folder": file.folder_id}
    file.armoire_id = armoire.id
    file.folder_id = folder.id if folder else None
    file.updated_at = utcnow()
    db.session.flush()
    assert_move_keeps_protection("file", file, protection)
    record(
        "file.moved",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"from": before, "to": {"armoire": armoire.id, "folder": file.folder_id}},
    )
    return file
