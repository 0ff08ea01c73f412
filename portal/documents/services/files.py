"""Files: rename and move (display metadata only; names never reach the filesystem)."""

from __future__ import annotations

import logging

from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.audit.services import record
from portal.database import utcnow
from portal.documents.errors import NotFound
from portal.documents.models import Armoire, File, Folder
from portal.documents.services import conflicts
from portal.documents.services.names import required_name
from portal.documents.services.quota import lock_organization
from portal.documents.services.versions import require_live
from portal.extensions import db

logger = logging.getLogger(__name__)


def rename_file(actor: Actor, file: File, name: str) -> File:
    """Rename a file (display name only: names never reach the filesystem)."""
    require_live(file)
    new = required_name(name)
    old = file.name
    if new == old:
        return file
    _refuse_taken(file, file.armoire_id, file.folder_id, new)
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

    _refuse_taken(file, armoire.id, folder.id if folder else None, file.name)
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


def _refuse_taken(file: File, armoire_id: int, folder_id: int | None, name: str) -> None:
    """A name is taken by another live file of the target folder: 409, as an upload with
    ``on_conflict=refuse``. Checked under the organisation lock, like uploads, so a rename
    and an upload of the same name cannot both pass the check."""
    lock_organization(file.organization_id)
    existing = conflicts.find_live_file(armoire_id, folder_id, name)
    if existing is not None and existing.id != file.id:
        raise conflicts.refuse(existing)
