"""Armoires (cabinets): create, rename, delete when empty."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask_babel import gettext as _
from sqlalchemy import func, select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.documents.errors import (
    NameConflict,
    NotEmpty,
)
from portal.documents.models import Armoire, File, Folder
from portal.documents.services.names import required_name
from portal.extensions import db
from portal.security.tenancy import scoped
from portal.security.text import clean_name

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def _armoire_name_taken(organization_id: int, name: str, exclude_id: int | None = None) -> bool:
    statement = scoped(Armoire, organization_id).where(func.lower(Armoire.name) == name.lower())
    if exclude_id is not None:
        statement = statement.where(Armoire.id != exclude_id)
    return db.session.execute(statement.limit(1)).first() is not None


def create_armoire(actor: Actor, name: str, description: str | None = None) -> Armoire:
    """Create an armoire in the actor's organisation."""
    name = required_name(name, 120)
    if _armoire_name_taken(actor.organization_id, name):
        raise NameConflict(_("Une armoire porte déjà ce nom."))
    armoire = Armoire(
        organization_id=actor.organization_id,
        name=name,
        description=clean_name(description)[:500] or None,
        created_by_id=actor.user_id,
    )
    db.session.add(armoire)
    db.session.flush()
    record("armoire.created", actor, target_type="armoire", target_id=armoire.id, target_label=armoire.name)
    return armoire


def rename_armoire(actor: Actor, armoire: Armoire, name: str) -> Armoire:
    """Rename an armoire."""
    name = required_name(name, 120)
    if _armoire_name_taken(armoire.organization_id, name, exclude_id=armoire.id):
        raise NameConflict(_("Une armoire porte déjà ce nom."))
    old = armoire.name
    armoire.name = name
    db.session.flush()
    record(
        "armoire.renamed",
        actor,
        target_type="armoire",
        target_id=armoire.id,
        target_label=name,
        details={"from": old, "to": name},
    )
    return armoire


def delete_armoire(actor: Actor, armoire: Armoire) -> None:
    """Delete an empty armoire (no folder, no file — trashed or purged files count)."""
    has_files = db.session.execute(select(File.id).where(File.armoire_id == armoire.id).limit(1)).first()
    has_folders = db.session.execute(select(Folder.id).where(Folder.armoire_id == armoire.id).limit(1)).first()
    if has_files or has_folders:
        raise NotEmpty(_("Cette armoire n'est pas vide : videz-la (corbeille comprise) avant de la supprimer."))
    from portal.compliance.policy import assert_container_deletable

    assert_container_deletable(actor, "armoire", armoire)
    record("armoire.deleted", actor, target_type="armoire", target_id=armoire.id, target_label=armoire.name)
    db.session.delete(armoire)
    db.session.flush()
