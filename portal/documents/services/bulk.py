"""Actions on a selection of files: move, trash, restore, and a streamed ZIP of their contents.

The ZIP is written by ``zipfile`` into a sink that hands each produced piece to the response
as it is made: nothing is spooled, and the plaintext exists only in the chunks passing through
(decrypted on the fly by ``reading.open_version_stream``), never on disk.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime

from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.database import utcnow
from portal.documents.errors import ContentUnavailable, InvalidName, NotFound
from portal.documents.models import Armoire, File, Folder
from portal.documents.services import files as file_services
from portal.documents.services import reading
from portal.documents.services import trash as trash_services
from portal.extensions import db
from portal.security.tenancy import scoped

logger = logging.getLogger(__name__)

MAX_SELECTION = 500


def parse_ids(values: Iterable[str]) -> list[int]:
    """Distinct positive ids, in order; anything else is a 422 (never a 500)."""
    ids: list[int] = []
    for value in values:
        if not (value.isascii() and value.isdigit() and 0 < len(value) <= 10):
            raise InvalidName(_("La sélection n'est pas valide."))
        number = int(value)
        if number not in ids:
            ids.append(number)
    if not ids:
        raise InvalidName(_("Sélectionnez au moins un fichier."))
    if len(ids) > MAX_SELECTION:
        raise InvalidName(_("Sélectionnez au plus %(max)d fichiers à la fois.", max=MAX_SELECTION))
    return ids


def selected_files(organization_id: int, ids: list[int], *, trashed: bool = False) -> list[File]:
    """The organisation's live (or trashed) files with these ids; any other id is a 404."""
    statement = scoped(File, organization_id).where(File.id.in_(ids), File.purged_at.is_(None))
    statement = statement.where(File.deleted_at.is_not(None) if trashed else File.deleted_at.is_(None))
    found = {file.id: file for file in db.session.execute(statement).scalars()}
    if len(found) != len(ids):
        raise NotFound(_("Un des fichiers sélectionnés n'existe plus."))
    return [found[file_id] for file_id in ids]


def move_files(actor: Actor, selection: list[File], armoire: Armoire, folder: Folder | None) -> int:
    for file in selection:
        file_services.move_file(actor, file, armoire, folder)
    return len(selection)


def trash_files(actor: Actor, selection: list[File]) -> int:
    for file in selection:
        trash_services.trash_file(actor, file)
    return len(selection)


def restore_files(actor: Actor, selection: list[File]) -> int:
    folder_ids = {f.folder_id for f in selection if f.folder_id}
    existing = set(db.session.execute(db.select(Folder.id).where(Folder.id.in_(folder_ids))).scalars())
    for file in selection:
        if file.folder_id and file.folder_id not in existing:
            file.folder_id = None
        trash_services.restore_from_trash(actor, file)
    return len(selection)


def zip_names(names: list[str]) -> list[str]:
    """Names inside the archive: a repeated name becomes "nom (2).ext", as on upload."""
    taken: set[str] = set()
    result = []
    for name in names:
        candidate, number = name, 1
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, dot, ext = name, "", ""
        while candidate.casefold() in taken:
            number += 1
            candidate = f"{stem} ({number}){dot}{ext}"
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


class _Sink:
    """A write-only file object for zipfile: it keeps what was written until it is drained."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


# The entry added at the end of an archive some of whose files could not be served.
ERROR_ENTRY = "ERREUR-integrite.txt"


def stream_zip(actor: Actor, file_ids: list[int], organization_id: int) -> Iterator[bytes]:
    """The ZIP of the current versions of ``file_ids``, produced piece by piece.

    Each file is opened (its first segment authenticated) only when its turn comes, and the
    read transaction is ended before its bytes are streamed: no transaction stays open while
    a slow client reads. Run inside the request context (``stream_with_context``).

    A file that fails its integrity check is never served as if whole (docs/security.md):
    failing before its first byte, it is left out; failing mid-stream, its entry is closed
    with a CRC that cannot match, so every extractor reports it as damaged. Either way
    ``file.integrity_failed`` is journalled, the other files still come, and the archive
    ends with ERROR_ENTRY naming each file left out or incomplete.
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
    loaded = selected_files(organization_id, file_ids)
    entries = list(zip(file_ids, zip_names([f.name for f in loaded]), [f.updated_at for f in loaded], strict=True))
    db.session.commit()
    left_out: list[str] = []
    incomplete: list[str] = []
    # Only integrity failures are journalled; content already gone (a destroyed key, a
    # missing blob) is left out with no entry, and the report must not claim one.
    journalled = False
    for file_id, name, modified in entries:
        file = db.session.get(File, file_id)
        if file is None or file.deleted_at is not None or file.purged_at is not None:
            continue
        try:
            _version, chunks = reading.open_version_stream(actor, file, None, record_access=False)
        except reading.IntegrityFailure as error:
            db.session.rollback()
            reading.journal_integrity_failure(actor, error)
            left_out.append(name)
            journalled = True
            continue
        except ContentUnavailable:
            db.session.rollback()
            left_out.append(name)
            continue
        db.session.commit()
        info = zipfile.ZipInfo(name, date_time=_zip_time(modified))
        info.compress_type = zipfile.ZIP_STORED
        try:
            with archive.open(info, mode="w", force_zip64=True) as entry:
                try:
                    for chunk in chunks:
                        entry.write(chunk)
                        if len(sink.buffer) >= 64 * 1024:
                            yield sink.drain()
                except reading.IntegrityFailure:
                    # Journalled by the stream itself. The bytes already sent cannot be
                    # taken back: a CRC that cannot match marks the entry as damaged for
                    # every extractor (zipfile keeps the running CRC in _crc until close).
                    entry._crc ^= 0xFFFFFFFF
                    incomplete.append(name)
                    journalled = True
        finally:
            chunks.close()
        yield sink.drain()
    if left_out or incomplete:
        archive.writestr(
            zipfile.ZipInfo(ERROR_ENTRY, date_time=_zip_time(utcnow())), error_report(left_out, incomplete, journalled)
        )
    archive.close()
    yield sink.drain()


def error_report(left_out: list[str], incomplete: list[str], journalled: bool) -> str:
    lines = [
        _(
            "Certains fichiers n'ont pas pu être servis : leur contenu stocké n'a pas passé le contrôle "
            "d'intégrité ou n'est plus disponible."
        ),
        "",
    ]
    if left_out:
        lines.append(_("Fichiers non inclus dans cette archive :"))
        lines += [f"- {name}" for name in left_out]
        lines.append("")
    if incomplete:
        lines.append(_("Fichiers incomplets (coupés au premier bloc altéré ; ne les utilisez pas) :"))
        lines += [f"- {name}" for name in incomplete]
        lines.append("")
    if journalled:
        lines.append(_("L'incident est consigné dans le journal. Prévenez l'administrateur de votre organisation."))
    else:
        lines.append(_("Prévenez l'administrateur de votre organisation."))
    return "\r\n".join(lines) + "\r\n"


def _zip_time(value: datetime | None) -> tuple[int, int, int, int, int, int]:
    if value is None or value.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (value.year, value.month, value.day, value.hour, value.minute, value.second)
