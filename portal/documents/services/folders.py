"""Folders of an armoire: create, rename, move (no cycles), delete when empty, trails and choices."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask_babel import gettext as _
from sqlalchemy import func, select, update

from portal.audit.context import Actor
from portal.audit.services import record
from portal.documents.errors import (
    NameConflict,
    NotEmpty,
    NotFound,
)
from portal.documents.models import Armoire, File, Folder
from portal.documents.services.names import required_name
from portal.extensions import db
from portal.security.tenancy import scoped

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def create_folder(actor: Actor, armoire: Armoire, parent: Folder | None, name: str) -> Folder:
    """Create a folder in ``armoire`` under ``parent`` (None: at the root)."""
    name = required_name(name)
    if parent is not None and parent.armoire_id != armoire.id:
        raise NotFound(_("Dossier introuvable."))
    siblings = select(Folder.id).where(
        Folder.armoire_id == armoire.id,
        Folder.parent_id.is_(None) if parent is None else Folder.parent_id == parent.id,
        func.lower(Folder.name) == name.lower(),
    )
    if db.session.execute(siblings.limit(1)).first():
        raise NameConflict(_("Un dossier porte déjà ce nom ici."))
    folder = Folder(
        organization_id=armoire.organization_id,
        armoire_id=armoire.id,
        parent_id=parent.id if parent else None,
        name=name,
        created_by_id=actor.user_id,
    )
    db.session.add(folder)
    db.session.flush()
    record(
        "folder.created",
        actor,
        target_type="folder",
        target_id=folder.id,
        target_label=name,
        details={"armoire": armoire.id, "parent": folder.parent_id},
    )
    return folder


def _folder_name_taken(armoire_id: int, parent_id: int | None, name: str, exclude_id: int) -> bool:
    statement = select(Folder.id).where(
        Folder.armoire_id == armoire_id,
        Folder.parent_id.is_(None) if parent_id is None else Folder.parent_id == parent_id,
        func.lower(Folder.name) == name.lower(),
        Folder.id != exclude_id,
    )
    return db.session.execute(statement.limit(1)).first() is not None


def rename_folder(actor: Actor, folder: Folder, name: str) -> Folder:
    """Rename a folder; a sibling with the same name (any case) is a conflict."""
    name = required_name(name)
    old = folder.name
    if name == old:
        return folder
    if _folder_name_taken(folder.armoire_id, folder.parent_id, name, folder.id):
        raise NameConflict(_("Un dossier porte déjà ce nom ici."))
    folder.name = name
    db.session.flush()
    record(
        "folder.renamed",
        actor,
        target_type="folder",
        target_id=folder.id,
        target_label=name,
        details={"from": old, "to": name},
    )
    return folder


def is_within(candidate: Folder | None, folder: Folder) -> bool:
    """Whether ``candidate`` is ``folder`` or one of its descendants (bounded walk up)."""
    seen: set[int] = set()
    while candidate is not None and candidate.id not in seen and len(seen) < 1000:
        if candidate.id == folder.id:
            return True
        seen.add(candidate.id)
        candidate = db.session.get(Folder, candidate.parent_id) if candidate.parent_id else None
    return False


def move_folder(actor: Actor, folder: Folder, parent: Folder | None) -> Folder:
    """Move a folder under ``parent`` (None: the armoire's root) of the same armoire.

    Moving a folder into itself or one of its descendants would detach a cycle from the
    tree: refused with a 409.
    """
    if parent is not None and (
        parent.armoire_id != folder.armoire_id or parent.organization_id != folder.organization_id
    ):
        raise NotFound(_("Dossier de destination introuvable."))
    new_parent_id = parent.id if parent else None
    if new_parent_id == folder.parent_id:
        return folder
    if parent is not None and is_within(parent, folder):
        raise NameConflict(_("Un dossier ne peut pas être déplacé dans lui-même ni dans l'un de ses sous-dossiers."))
    if _folder_name_taken(folder.armoire_id, new_parent_id, folder.name, folder.id):
        raise NameConflict(_("Un dossier porte déjà ce nom à cet endroit."))
    from portal.compliance.policy import assert_move_keeps_protection, covering

    protection = covering("folder", folder)
    old_parent = folder.parent_id
    folder.parent_id = new_parent_id
    db.session.flush()
    assert_move_keeps_protection("folder", folder, protection)
    record(
        "folder.moved",
        actor,
        target_type="folder",
        target_id=folder.id,
        target_label=folder.name,
        details={"armoire": folder.armoire_id, "from": old_parent, "to": new_parent_id},
    )
    return folder


def delete_folder(actor: Actor, folder: Folder) -> None:
    """Delete an empty folder: no sub-folder and no live file. Files of the trash that were in
    it will be restored at the armoire's root."""
    has_folders = db.session.execute(select(Folder.id).where(Folder.parent_id == folder.id).limit(1)).first()
    has_files = db.session.execute(
        select(File.id).where(File.folder_id == folder.id, File.deleted_at.is_(None)).limit(1)
    ).first()
    if has_folders or has_files:
        raise NotEmpty(_("Ce dossier n'est pas vide : déplacez ou supprimez d'abord ses fichiers et sous-dossiers."))
    from portal.compliance.policy import assert_container_deletable

    assert_container_deletable(actor, "folder", folder)
    db.session.execute(update(File).where(File.folder_id == folder.id).values(folder_id=None))
    record(
        "folder.deleted",
        actor,
        target_type="folder",
        target_id=folder.id,
        target_label=folder.name,
        details={"armoire": folder.armoire_id, "parent": folder.parent_id},
    )
    db.session.delete(folder)
    db.session.flush()


def folder_choices(organization_id: int, armoire: Armoire, folder: Folder) -> list[tuple[str, str]]:
    """Where ``folder`` may move: the armoire's root and every folder outside its subtree."""
    folders = list(db.session.execute(scoped(Folder, organization_id).where(Folder.armoire_id == armoire.id)).scalars())
    by_id = {item.id: item for item in folders}

    def chain(item: Folder) -> list[Folder]:
        names: list[Folder] = []
        seen: set[int] = set()
        current: Folder | None = item
        while current is not None and current.id not in seen:
            seen.add(current.id)
            names.append(current)
            current = by_id.get(current.parent_id) if current.parent_id else None
        return list(reversed(names))

    choices = [("", armoire.name)]
    for item in folders:
        path = chain(item)
        if any(node.id == folder.id for node in path):
            continue
        choices.append((str(item.id), " / ".join([armoire.name, *(node.name for node in path)])))
    return [choices[0], *sorted(choices[1:], key=lambda choice: choice[1].lower())]


def list_folders(organization_id: int, armoire: Armoire, parent: Folder | None) -> list[Folder]:
    """Sub-folders of ``parent`` (or the armoire's root), by name."""
    statement = scoped(Folder, organization_id).where(Folder.armoire_id == armoire.id)
    statement = statement.where(Folder.parent_id.is_(None) if parent is None else Folder.parent_id == parent.id)
    return list(db.session.execute(statement.order_by(Folder.name_key, Folder.id)).scalars())


def folder_trail(folder: Folder | None) -> list[Folder]:
    """The folder and its ancestors, root first (bounded against cycles)."""
    trail: list[Folder] = []
    seen: set[int] = set()
    while folder is not None and folder.id not in seen and len(trail) < 100:
        seen.add(folder.id)
        trail.append(folder)
        folder = db.session.get(Folder, folder.parent_id) if folder.parent_id else None
    return list(reversed(trail))


TREE_MAX = 2000


def folder_tree(organization_id: int, armoire: Armoire) -> dict[int | None, list[Folder]]:
    """``{parent_id: [children by name]}`` for the side tree (None: the armoire's root).

    Bounded: an armoire with more folders than ``TREE_MAX`` shows the first ones by name;
    the list beside the tree still shows every sub-folder of the current one.
    """
    statement = scoped(Folder, organization_id).where(Folder.armoire_id == armoire.id)
    rows = db.session.execute(statement.order_by(Folder.name_key, Folder.id).limit(TREE_MAX)).scalars()
    children: dict[int | None, list[Folder]] = {}
    for folder in rows:
        children.setdefault(folder.parent_id, []).append(folder)
    return children
