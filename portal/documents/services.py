"""Documents services: armoires, folders, files, versions, trash and purge.

Every function takes explicit arguments (an ``Actor`` for anything journalled), flushes
and never commits; errors are the typed ones of ``portal.documents.errors``. Stable API
(also used by the desktop JSON API):

    sanitize_name(name: str) -> str
    detect_mime(head: bytes) -> str
    create_armoire(actor, name, description=None) -> Armoire
    rename_armoire(actor, armoire, name) -> Armoire
    delete_armoire(actor, armoire) -> None                      # only when empty
    create_folder(actor, armoire, parent, name) -> Folder
    list_folders(organization_id, armoire, parent) -> list[Folder]
    folder_trail(folder) -> list[Folder]                        # root first, for breadcrumbs
    list_files(organization_id, armoire, folder, sort="name", search="", page=1, per_page=25) -> Page[File]
    used_bytes(organization_id) -> int
    store_upload(actor, armoire, folder, filename, stream_chunks, declared_size, comment=None) -> FileVersion
    add_version(actor, file, filename, chunks, declared_size, comment=None) -> FileVersion
    restore_version(actor, file, number) -> FileVersion
    list_versions(file) -> list[FileVersion]
    open_version_stream(actor, file, version_number=None, start=0, end=None, *, preview=False)
        -> tuple[FileVersion, Iterator[bytes]]
    record_integrity_failure(actor, file, version, detail) -> None
    rename_file(actor, file, name) -> File
    move_file(actor, file, armoire, folder) -> File
    trash_file(actor, file) -> File
    restore_from_trash(actor, file) -> File
    list_trash(organization_id, page=1) -> Page[File]
    purge_file(actor, file, reason="purge") -> list[str]        # storage keys to delete AFTER commit
    delete_blobs(keys) -> None
    purge_expired_trash(now, retention_days) -> list[str]
    check_storage(fix=False, grace_seconds=3600) -> StorageReport
    seed_demo_documents(organization_id, author_id) -> list[File]

Uploads: the blob is written, fsynced and renamed before any row is committed; if the
transaction then fails, the caller deletes the blobs of the versions it created
(``delete_blobs([v.storage_key ...])``). A purge shreds the data keys in the transaction
and deletes the blobs only after the commit: a crash in between leaves undecryptable
orphans that ``flask documents check-storage --fix`` removes.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import filetype
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, select, update

from portal.audit.context import Actor
from portal.audit.services import record
from portal.database import utcnow
from portal.documents.errors import (
    ContentUnavailable,
    FileTooLarge,
    IntegrityFailure,
    InvalidName,
    NameConflict,
    NotEmpty,
    NotFound,
    QuotaExceeded,
)
from portal.documents.models import NAME_MAX, Armoire, File, FileVersion, Folder
from portal.extensions import db
from portal.organizations.models import Organization
from portal.security.tenancy import scoped
from portal.web.pagination import Page, paginate

logger = logging.getLogger(__name__)

MIME_SNIFF_BYTES = 8192
PREVIEWABLE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})
SORTS = {
    "name": (File.name, False),
    "-name": (File.name, True),
    "size": (File.size, False),
    "-size": (File.size, True),
    "type": (File.mime_type, False),
    "-type": (File.mime_type, True),
    "modified": (File.updated_at, False),
    "-modified": (File.updated_at, True),
}


# ---------------------------------------------------------------- names and types


def sanitize_name(name: str | None, *, fallback: str = "sans-nom") -> str:
    """A display name: no path, no control characters, NFC, at most 255 chars (extension kept)."""
    text = unicodedata.normalize("NFC", name or "")
    # Browsers and old clients send full paths; only the last component is a name.
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split()).strip(" .")
    if not text:
        return fallback
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16 and stem:
            text = stem[: NAME_MAX - len(ext) - 1].rstrip() + "." + ext
        else:
            text = text[:NAME_MAX]
    return text


def _required_name(name: str | None, limit: int = NAME_MAX) -> str:
    cleaned = sanitize_name(name, fallback="")
    if not cleaned:
        raise InvalidName(_("Le nom est obligatoire."))
    if len(cleaned) > limit:
        raise InvalidName(_("Le nom ne doit pas dépasser %(limit)s caractères.", limit=limit))
    return cleaned


def detect_mime(head: bytes) -> str:
    """The MIME type from the content's first bytes; the client's claim is never used."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return kind.mime
    if not head:
        return "application/octet-stream" if head is None else "text/plain"
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # The sniffed prefix may cut a multi-byte character in two.
        if error.reason != "unexpected end of data":
            return "application/octet-stream"
    return "text/plain"


def is_previewable(mime_type: str) -> bool:
    return mime_type in PREVIEWABLE_TYPES


# ---------------------------------------------------------------- armoires and folders


def _armoire_name_taken(organization_id: int, name: str, exclude_id: int | None = None) -> bool:
    statement = scoped(Armoire, organization_id).where(func.lower(Armoire.name) == name.lower())
    if exclude_id is not None:
        statement = statement.where(Armoire.id != exclude_id)
    return db.session.execute(statement.limit(1)).first() is not None


def create_armoire(actor: Actor, name: str, description: str | None = None) -> Armoire:
    """Create an armoire in the actor's organisation."""
    name = _required_name(name, 120)
    if _armoire_name_taken(actor.organization_id, name):
        raise NameConflict(_("Une armoire porte déjà ce nom."))
    armoire = Armoire(
        organization_id=actor.organization_id,
        name=name,
        description=(description or "").strip()[:500] or None,
        created_by_id=actor.user_id,
    )
    db.session.add(armoire)
    db.session.flush()
    record("armoire.created", actor, target_type="armoire", target_id=armoire.id, target_label=armoire.name)
    return armoire


def rename_armoire(actor: Actor, armoire: Armoire, name: str) -> Armoire:
    """Rename an armoire."""
    name = _required_name(name, 120)
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
    record("armoire.deleted", actor, target_type="armoire", target_id=armoire.id, target_label=armoire.name)
    db.session.delete(armoire)
    db.session.flush()


def create_folder(actor: Actor, armoire: Armoire, parent: Folder | None, name: str) -> Folder:
    """Create a folder in ``armoire`` under ``parent`` (None: at the root)."""
    name = _required_name(name)
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


def list_folders(organization_id: int, armoire: Armoire, parent: Folder | None) -> list[Folder]:
    """Sub-folders of ``parent`` (or the armoire's root), by name."""
    statement = scoped(Folder, organization_id).where(Folder.armoire_id == armoire.id)
    statement = statement.where(Folder.parent_id.is_(None) if parent is None else Folder.parent_id == parent.id)
    return list(db.session.execute(statement.order_by(func.lower(Folder.name))).scalars())


def folder_trail(folder: Folder | None) -> list[Folder]:
    """The folder and its ancestors, root first (bounded against cycles)."""
    trail: list[Folder] = []
    seen: set[int] = set()
    while folder is not None and folder.id not in seen and len(trail) < 100:
        seen.add(folder.id)
        trail.append(folder)
        folder = db.session.get(Folder, folder.parent_id) if folder.parent_id else None
    return list(reversed(trail))


# ---------------------------------------------------------------- listing


def list_files(
    organization_id: int,
    armoire: Armoire,
    folder: Folder | None,
    sort: str = "name",
    search: str = "",
    page: object = 1,
    per_page: int = 25,
) -> Page[File]:
    """Live files of a folder, sorted, filtered by name, one page."""
    statement = scoped(File, organization_id).where(File.armoire_id == armoire.id, File.deleted_at.is_(None))
    statement = statement.where(File.folder_id.is_(None) if folder is None else File.folder_id == folder.id)
    search = (search or "").strip()[:100]
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(func.lower(File.name).like(f"%{escaped}%", escape="\\"))
    column, descending = SORTS.get(sort, SORTS["name"])
    order = column.desc() if descending else column.asc()
    return paginate(statement.order_by(order, File.id), page, per_page)


def used_bytes(organization_id: int) -> int:
    """Bytes counted against the quota: every stored version of every non-purged file."""
    total = db.session.execute(
        select(func.coalesce(func.sum(FileVersion.size), 0))
        .join(File, File.id == FileVersion.file_id)
        .where(FileVersion.organization_id == organization_id, File.purged_at.is_(None))
    ).scalar_one()
    return int(total)


def _quota(organization_id: int) -> int | None:
    return db.session.execute(
        select(Organization.storage_quota_bytes).where(Organization.id == organization_id)
    ).scalar_one_or_none()


# ---------------------------------------------------------------- writing versions


@dataclass
class _Limits:
    max_bytes: int
    quota_left: int | None


def _limits(organization_id: int, declared_size: int | None) -> _Limits:
    max_bytes = int(current_app.config["MAX_UPLOAD_BYTES"])
    quota = _quota(organization_id)
    quota_left = None if quota is None else quota - used_bytes(organization_id)
    limits = _Limits(max_bytes, quota_left)
    if declared_size is not None:
        _check_size(limits, declared_size)
    return limits


def _check_size(limits: _Limits, size: int) -> None:
    if size > limits.max_bytes:
        mib = limits.max_bytes // (1024 * 1024)
        raise FileTooLarge(_("Le fichier dépasse la taille maximale autorisée (%(mib)s Mio).", mib=mib))
    if limits.quota_left is not None and size > limits.quota_left:
        raise QuotaExceeded(
            _("Le quota de stockage de votre organisation est atteint : ce fichier ne peut pas être ajouté.")
        )


def _lock_file(file: File) -> None:
    """Take the file row's write lock so version numbers are allocated one at a time."""
    now = utcnow()
    db.session.execute(update(File).where(File.id == file.id).values(updated_at=now))
    file.updated_at = now


def _next_number(file: File) -> int:
    current = db.session.execute(
        select(func.coalesce(func.max(FileVersion.number), 0)).where(FileVersion.file_id == file.id)
    ).scalar_one()
    return int(current) + 1


def _context(organization_id: int, file_id: int, version_id: int) -> dict[str, str]:
    return {"org": str(organization_id), "file": str(file_id), "version": str(version_id)}


def _write_version(
    actor: Actor,
    file: File,
    chunks: Iterable[bytes],
    declared_size: int | None,
    comment: str | None,
    *,
    restored_from: int | None = None,
) -> FileVersion:
    """Encrypt ``chunks`` into a new blob and add its version row (flushed, not committed)."""
    from portal.crypto.envelope import new_data_key
    from portal.crypto.streaming import EncryptingWriter, associated_data
    from portal.storage.blobs import get_blob_store

    limits = _limits(file.organization_id, declared_size)
    _lock_file(file)
    version = FileVersion(
        organization_id=file.organization_id,
        file_id=file.id,
        number=_next_number(file),
        author_id=actor.user_id,
        comment=(comment or "").strip()[:500] or None,
        restored_from_version=restored_from,
    )
    db.session.add(version)
    db.session.flush()
    context = _context(file.organization_id, file.id, version.id)
    data_key, key = new_data_key(file.organization_id, context)
    version.data_key_id = data_key.id
    store = get_blob_store()
    head = bytearray()
    sniffed: str | None = None
    with store.create() as pending:
        writer = EncryptingWriter(pending.file, key, associated_data(file.organization_id, file.id, version.id))
        written = 0
        for chunk in chunks:
            if not chunk:
                continue
            written += len(chunk)
            _check_size(limits, written)
            if sniffed is None:
                head.extend(chunk[: MIME_SNIFF_BYTES - len(head)])
                if len(head) >= MIME_SNIFF_BYTES:
                    sniffed = detect_mime(bytes(head))
            writer.write(chunk)
        writer.finish()
    storage_key = pending.key
    try:
        version.storage_key = storage_key
        version.size = writer.plaintext_size
        version.sha256 = writer.sha256
        version.mime_type = sniffed or detect_mime(bytes(head))
        file.current_version_id = version.id
        file.size = version.size
        file.mime_type = version.mime_type
        file.unavailable = False
        db.session.flush()
    except BaseException:
        store.delete(storage_key)
        raise
    return version


def _target_label(file: File) -> str:
    return file.name


def store_upload(
    actor: Actor,
    armoire: Armoire,
    folder: Folder | None,
    filename: str,
    stream_chunks: Iterable[bytes],
    declared_size: int | None,
    comment: str | None = None,
) -> FileVersion:
    """Store a new file (version 1) from a stream of plaintext chunks."""
    if folder is not None and folder.armoire_id != armoire.id:
        raise NotFound(_("Dossier introuvable."))
    file = File(
        organization_id=armoire.organization_id,
        armoire_id=armoire.id,
        folder_id=folder.id if folder else None,
        name=sanitize_name(filename),
        created_by_id=actor.user_id,
    )
    db.session.add(file)
    db.session.flush()
    version = _write_version(actor, file, stream_chunks, declared_size, comment)
    try:
        record(
            "file.added",
            actor,
            target_type="file",
            target_id=file.id,
            target_label=_target_label(file),
            details={
                "version": version.number,
                "size": version.size,
                "sha256": version.sha256,
                "mime_type": version.mime_type,
                "armoire": armoire.id,
                "folder": file.folder_id,
            },
        )
    except BaseException:
        delete_blobs([version.storage_key])
        raise
    return version


def add_version(
    actor: Actor,
    file: File,
    filename: str | None,
    chunks: Iterable[bytes],
    declared_size: int | None,
    comment: str | None = None,
) -> FileVersion:
    """Add a new version to ``file``; earlier versions are never touched."""
    _require_live(file)
    version = _write_version(actor, file, chunks, declared_size, comment)
    try:
        record(
            "file.modified",
            actor,
            target_type="file",
            target_id=file.id,
            target_label=_target_label(file),
            details={
                "version": version.number,
                "size": version.size,
                "sha256": version.sha256,
                "mime_type": version.mime_type,
                "uploaded_name": sanitize_name(filename) if filename else None,
            },
        )
    except BaseException:
        delete_blobs([version.storage_key])
        raise
    return version


def restore_version(actor: Actor, file: File, number: int) -> FileVersion:
    """Create a new version whose content is that of version ``number``."""
    _require_live(file)
    source, stream = open_version_stream(actor, file, number, record_access=False)
    version = _write_version(
        actor, file, stream, source.size, f"Restauration de la version {source.number}", restored_from=source.number
    )
    try:
        record(
            "version.restored",
            actor,
            target_type="file",
            target_id=file.id,
            target_label=_target_label(file),
            details={"from_version": source.number, "version": version.number, "sha256": version.sha256},
        )
    except BaseException:
        delete_blobs([version.storage_key])
        raise
    return version


def list_versions(file: File) -> list[FileVersion]:
    """Every version of a file, newest first."""
    return list(
        db.session.execute(
            select(FileVersion).where(FileVersion.file_id == file.id).order_by(FileVersion.number.desc())
        ).scalars()
    )


def get_version(file: File, number: int | None) -> FileVersion:
    if number is None:
        version = db.session.get(FileVersion, file.current_version_id) if file.current_version_id else None
    else:
        version = db.session.execute(
            select(FileVersion).where(FileVersion.file_id == file.id, FileVersion.number == number)
        ).scalar_one_or_none()
    if version is None or version.organization_id != file.organization_id:
        raise NotFound(_("Cette version n'existe pas."))
    return version


def _require_live(file: File) -> None:
    if file.purged_at is not None or file.deleted_at is not None:
        raise NotFound(_("Ce fichier est dans la corbeille ou a été détruit."))


# ---------------------------------------------------------------- reading


def open_version_stream(
    actor: Actor,
    file: File,
    version_number: int | None = None,
    start: int = 0,
    end: int | None = None,
    *,
    preview: bool = False,
    record_access: bool = True,
) -> tuple[FileVersion, Iterator[bytes]]:
    """Decrypt a version as a stream of bytes [start, end); records file.downloaded.

    The first segment is authenticated before this returns, so a tampered blob raises
    IntegrityFailure here rather than after response headers were sent.
    """
    from portal.crypto.envelope import open_data_key
    from portal.crypto.errors import CryptoError, IntegrityError, KeyShredded, KeyUnavailable
    from portal.crypto.streaming import decrypt_stream, plaintext_length
    from portal.storage.blobs import get_blob_store

    if file.purged_at is not None:
        raise NotFound(_("Ce fichier a été détruit."))
    version = get_version(file, version_number)
    if not version.storage_key or version.blob_missing or version.data_key is None:
        raise ContentUnavailable(_("Le contenu de cette version n'est plus disponible."))
    store = get_blob_store()
    try:
        raw = store.open(version.storage_key)
    except FileNotFoundError as error:
        raise ContentUnavailable(_("Le contenu de cette version est introuvable dans le stockage.")) from error
    try:
        try:
            key = open_data_key(version.data_key, _context(file.organization_id, file.id, version.id))
        except (KeyShredded, KeyUnavailable) as error:
            raise ContentUnavailable(_("La clé de ce contenu est indisponible ou a été détruite.")) from error
        try:
            if plaintext_length(os.fstat(raw.fileno()).st_size) != version.size:
                raise IntegrityError("stored size does not match the recorded size")
            chunks = decrypt_stream(raw, key, associated_data(file.organization_id, file.id, version.id), start, end)
            first = next(chunks, b"")
        except CryptoError as error:
            raise IntegrityFailure(
                _("Le contenu stocké n'a pas passé le contrôle d'intégrité : il n'est pas servi.")
            ) from error
    except BaseException:
        raw.close()
        raise
    if record_access and (not preview or start == 0):
        record(
            "file.downloaded",
            actor,
            target_type="file",
            target_id=file.id,
            target_label=_target_label(file),
            details={"version": version.number, "preview": preview} if preview else {"version": version.number},
        )

    def stream() -> Iterator[bytes]:
        try:
            if first:
                yield first
            yield from chunks
        finally:
            raw.close()

    return version, stream()


def associated_data(organization_id: int, file_id: int, version_id: int) -> bytes:
    from portal.crypto.streaming import associated_data as crypto_aad

    return crypto_aad(organization_id, file_id, version_id)


def record_integrity_failure(actor: Actor, file: File, version: FileVersion | None, detail: str) -> None:
    """Journal a blob that failed authentication (the caller commits it on its own)."""
    record(
        "file.integrity_failed",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=_target_label(file),
        details={"version": version.number if version else None, "detail": detail[:200]},
    )


# ---------------------------------------------------------------- rename, move, trash


def rename_file(actor: Actor, file: File, name: str) -> File:
    """Rename a file (display name only: names never reach the filesystem)."""
    _require_live(file)
    new = _required_name(name)
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
    _require_live(file)
    if armoire.organization_id != file.organization_id:
        raise NotFound(_("Armoire introuvable."))
    if folder is not None and (folder.armoire_id != armoire.id or folder.organization_id != file.organization_id):
        raise NotFound(_("Dossier introuvable."))
    before = {"armoire": file.armoire_id, "folder": file.folder_id}
    file.armoire_id = armoire.id
    file.folder_id = folder.id if folder else None
    file.updated_at = utcnow()
    db.session.flush()
    record(
        "file.moved",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"from": before, "to": {"armoire": armoire.id, "folder": file.folder_id}},
    )
    return file


def trash_file(actor: Actor, file: File) -> File:
    """Move a file to the trash (reversible until purged)."""
    _require_live(file)
    file.deleted_at = utcnow()
    file.deleted_by_id = actor.user_id
    db.session.flush()
    record("file.deleted", actor, target_type="file", target_id=file.id, target_label=file.name)
    return file


def restore_from_trash(actor: Actor, file: File) -> File:
    """Bring a trashed file back where it was (its armoire root if its folder is gone)."""
    if file.purged_at is not None or file.deleted_at is None:
        raise NotFound(_("Ce fichier n'est pas dans la corbeille."))
    file.deleted_at = None
    file.deleted_by_id = None
    db.session.flush()
    record("file.restored", actor, target_type="file", target_id=file.id, target_label=file.name)
    return file


def list_trash(organization_id: int, page: object = 1, per_page: int = 25) -> Page[File]:
    """Files in the trash, most recently deleted first."""
    statement = scoped(File, organization_id).where(File.deleted_at.is_not(None), File.purged_at.is_(None))
    return paginate(statement.order_by(File.deleted_at.desc(), File.id), page, per_page)


def purge_file(actor: Actor, file: File, reason: str = "purge") -> list[str]:
    """Crypto-shred every version of a trashed file; returns blob keys to delete after commit."""
    from portal.crypto.envelope import shred_data_key

    if file.purged_at is not None or file.deleted_at is None:
        raise NotFound(_("Seul un fichier de la corbeille peut être détruit."))
    keys: list[str] = []
    versions = list_versions(file)
    for version in versions:
        if version.data_key is not None and version.data_key.wrapped_key is not None:
            shred_data_key(version.data_key, file_id=file.id, version_id=version.id, reason=reason)
        if version.storage_key:
            keys.append(version.storage_key)
            # No row names the blob any more: a crash before deletion leaves an orphan
            # (undecryptable) that check-storage --fix removes.
            version.storage_key = None
    file.purged_at = utcnow()
    db.session.flush()
    record(
        "file.purged",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"versions": len(versions), "reason": reason},
    )
    return keys


def delete_blobs(keys: Iterable[str | None]) -> None:
    """Remove blobs (after a purge commit, or after a failed upload transaction)."""
    from portal.storage.blobs import get_blob_store

    store = get_blob_store()
    for key in keys:
        if not key:
            continue
        try:
            store.delete(key)
        except OSError:
            logger.exception("could not delete blob %s; check-storage will report it", key)


def purge_expired_trash(now: datetime, retention_days: int) -> list[str]:
    """Purge every file trashed before ``now - retention_days`` (system actor per organisation)."""
    limit = now - timedelta(days=retention_days)
    files = db.session.execute(
        select(File).where(File.deleted_at.is_not(None), File.deleted_at < limit, File.purged_at.is_(None))
    ).scalars()
    keys: list[str] = []
    for file in list(files):
        keys.extend(purge_file(Actor.system(file.organization_id), file, reason="retention"))
    return keys


# ---------------------------------------------------------------- consistency


@dataclass
class StorageReport:
    orphan_blobs: list[str] = field(default_factory=list)
    recent_blobs_skipped: list[str] = field(default_factory=list)
    missing_blobs: list[tuple[int, int, int]] = field(default_factory=list)  # (file id, version number, version id)
    temp_swept: int = 0


def check_storage(fix: bool = False, grace_seconds: int = 3600) -> StorageReport:
    """Compare blobs on disk with version rows; with ``fix`` delete orphans and flag missing blobs."""
    from portal.storage.blobs import get_blob_store

    store = get_blob_store()
    report = StorageReport()
    known = {
        key: (file_id, number, version_id)
        for key, file_id, number, version_id in db.session.execute(
            select(FileVersion.storage_key, FileVersion.file_id, FileVersion.number, FileVersion.id).where(
                FileVersion.storage_key.is_not(None)
            )
        )
    }
    on_disk = set(store.iter_keys())
    now = time.time()
    for key in sorted(on_disk - known.keys()):
        # A blob renamed into place moments ago may still be waiting for its row's commit.
        try:
            with store.open(key) as handle:
                age = now - os.fstat(handle.fileno()).st_mtime
        except FileNotFoundError:
            continue
        if age < grace_seconds:
            report.recent_blobs_skipped.append(key)
            continue
        report.orphan_blobs.append(key)
        if fix:
            store.delete(key)
    for key in sorted(known.keys() - on_disk):
        file_id, number, version_id = known[key]
        report.missing_blobs.append((file_id, number, version_id))
        if fix:
            db.session.execute(update(FileVersion).where(FileVersion.id == version_id).values(blob_missing=True))
            db.session.execute(update(File).where(File.id == file_id).values(unavailable=True))
    if fix:
        report.temp_swept = store.sweep_temp(grace_seconds)
        db.session.flush()
    return report


# ---------------------------------------------------------------- demo data


def _demo_png() -> bytes:
    """A 16×16 two-colour PNG, built with zlib only."""
    width = height = 16
    rows = b"".join(
        b"\x00" + b"".join((b"\x1f\x4e\x79" if (x // 4 + y // 4) % 2 else b"\xf2\xc1\x4e") for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _demo_pdf(text: str) -> bytes:
    """A one-page PDF with a line of text, cross-reference offsets computed."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def seed_demo_documents(organization_id: int, author_id: int) -> list[File]:
    """Add a few small generated files to the organisation's first armoire (creating one if needed)."""
    actor = Actor(organization_id, author_id, user_agent="demo-data")
    armoire = db.session.execute(scoped(Armoire, organization_id).order_by(Armoire.id).limit(1)).scalar_one_or_none()
    if armoire is None:
        armoire = create_armoire(actor, "Documents", "Documents de démonstration")
    folder = create_folder(actor, armoire, None, "Notes de service")
    samples = [
        (
            None,
            "Bienvenue dans Coffre.txt",
            "Bienvenue dans Coffre.\nChaque version de chaque fichier est chiffrée avec sa propre clé.\n".encode(),
        ),
        (None, "Procès-verbal AG 2026.pdf", _demo_pdf("Proces-verbal de l'assemblee generale 2026")),
        (folder, "Logo.png", _demo_png()),
    ]
    files = []
    for target, name, content in samples:
        version = store_upload(actor, armoire, target, name, [content], len(content))
        files.append(db.session.get(File, version.file_id))
    return files
