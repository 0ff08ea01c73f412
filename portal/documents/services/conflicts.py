"""Name conflicts of uploads: what happens when a file of that name is already in the folder.

``version`` adds the upload as a new version of the existing file, ``rename`` keeps both
(the new one named "nom (2).pdf", "nom (3).pdf", …) and ``refuse`` raises FileNameTaken.
The decision is taken in the upload's final transaction, after the organisation row is
locked (``quota.lock_organization``: a row lock on PostgreSQL, the IMMEDIATE write lock on
SQLite), so two uploads of the same new name are serialised: the second one sees the first.
"""

from __future__ import annotations

import os

from flask_babel import gettext as _
from sqlalchemy import select

from portal.documents.errors import FileNameTaken, InvalidName
from portal.documents.models import NAME_MAX, File
from portal.extensions import db

ON_CONFLICT = ("version", "rename", "refuse")
# A folder with this many copies of one name is refused rather than scanned further.
MAX_RENAME_ATTEMPTS = 1000


def parse_on_conflict(value: str | None, default: str = "refuse") -> str:
    if value is None or value == "":
        return default
    if value not in ON_CONFLICT:
        raise InvalidName(_("on_conflict vaut version, rename ou refuse."))
    return value


def find_live_file(armoire_id: int, folder_id: int | None, name: str) -> File | None:
    """The live (not trashed, not purged) file named exactly ``name`` in that folder."""
    folder_clause = File.folder_id.is_(None) if folder_id is None else File.folder_id == folder_id
    return (
        db.session.execute(
            select(File)
            .where(
                File.armoire_id == armoire_id,
                folder_clause,
                File.name == name,
                File.deleted_at.is_(None),
                File.purged_at.is_(None),
            )
            .order_by(File.id)
            .limit(1)
        )
        .scalars()
        .first()
    )


def numbered_name(name: str, number: int) -> str:
    """ "rapport.pdf", 2 -> "rapport (2).pdf"; the stem is shortened to keep NAME_MAX."""
    stem, extension = os.path.splitext(name)
    if not stem:  # ".bashrc"
        stem, extension = name, ""
    suffix = f" ({number}){extension}"
    return stem[: NAME_MAX - len(suffix)] + suffix


def free_name(armoire_id: int, folder_id: int | None, name: str) -> str:
    """The first "nom (n).ext" (n >= 2) that no live file of the folder uses."""
    folder_clause = File.folder_id.is_(None) if folder_id is None else File.folder_id == folder_id
    taken = set(
        db.session.execute(
            select(File.name).where(
                File.armoire_id == armoire_id,
                folder_clause,
                File.deleted_at.is_(None),
                File.purged_at.is_(None),
                # Only the names that could collide with a numbered copy, not the whole folder.
                File.name.startswith(os.path.splitext(name)[0] or name, autoescape=True),
            )
        ).scalars()
    )
    for number in range(2, MAX_RENAME_ATTEMPTS + 2):
        candidate = numbered_name(name, number)
        if candidate not in taken:
            return candidate
    raise InvalidName(_("Trop de fichiers portent déjà ce nom dans ce dossier."))


def taken_message() -> str:
    return _("Un fichier porte déjà ce nom dans ce dossier.")


def refuse(existing: File) -> FileNameTaken:
    return FileNameTaken(taken_message(), existing_file_id=existing.id)
