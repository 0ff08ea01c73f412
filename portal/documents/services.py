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
    rename_folder(actor, folder, name) -> Folder
    move_folder(actor, folder, parent) -> Folder                # same armoire, no cycles (409)
    delete_folder(actor, folder) -> None                        # only when empty (409)
    list_folders(organization_id, armoire, parent) -> list[Folder]
    folder_trail(folder) -> list[Folder]                        # root first, for breadcrumbs
    list_files(organization_id, armoire, folder, sort="name", search="", page=1, per_page=25) -> Page[File]
    used_bytes(organization_id) -> int
    store_upload(actor, armoire, folder, filename, stream_chunks, declared_size, comment=None,
                 audit_details=None) -> FileVersion
    add_version(actor, file, filename, chunks, declared_size, comment=None, audit_details=None) -> FileVersion
    # the same in phases, for callers that read more of the body after the file part:
    prepare_upload(...) / prepare_version(...) -> UploadPlan      # T0, reads only
    seal_upload(plan, chunks) -> SealedUpload                     # ends T0, no transaction while streaming
    finish_upload(sealed) -> FileVersion                          # T1: locks, quota, rows, journal (flushed)
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

Uploads: no transaction is open while the content streams (see "writing versions"); the
blob is written, fsynced and renamed before its rows are added; if the caller's commit then
fails, it deletes the blobs of the versions it created (``delete_blobs([v.storage_key ...])``).
A purge shreds the data keys in the transaction
and deletes the blobs only after the commit: a crash in between leaves undecryptable
orphans that ``flask documents check-storage --fix`` removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import secrets
import struct
import threading
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

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
    StorageFull,
)
from portal.documents.models import NAME_MAX, Armoire, File, FileVersion, Folder
from portal.extensions import db
from portal.organizations.models import Organization
from portal.security.tenancy import MAX_ID, scoped
from portal.web.pagination import Page, paginate

if TYPE_CHECKING:
    from portal.crypto.envelope import GeneratedKey

logger = logging.getLogger(__name__)

# Chunks (about 1 MiB each) in flight between the reading thread and each crypto worker:
# enough to keep them busy, small enough to keep memory flat.
PIPELINE_DEPTH = 3

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
    name = _required_name(name)
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
    old_parent = folder.parent_id
    folder.parent_id = new_parent_id
    db.session.flush()
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
#
# An upload runs in three steps so that no transaction is open while the body arrives:
#   T0  prepare_upload / prepare_version: reads only (targets, permissions done by the view,
#       size and quota pre-check on the declared size) -> UploadPlan of plain values;
#   --  seal_upload: ends T0 (release_transaction), makes the data key without the database,
#       encrypts the stream into a pending blob, fsync + rename -> SealedUpload;
#   T1  finish_upload: short; locks the organisation (quota) and the file (numbering),
#       re-checks the quota on the real size, inserts the rows and the journal entry,
#       flushes; the view commits. Any failure from here deletes the blob.


@dataclass
class UploadPlan:
    """What T0 decided, as plain values: no ORM object is used once T0 has ended."""

    actor: Actor
    organization_id: int
    armoire_id: int
    folder_id: int | None
    file_id: int | None  # None: a new file (version 1)
    filename: str
    uploaded_name: str | None
    comment: str | None
    max_bytes: int
    quota_left: int | None  # at T0, to stop a too-large stream early; T1 checks again
    action: str
    audit_details: dict[str, Any] = field(default_factory=dict)
    restored_from: int | None = None
    version_uid: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class SealedUpload:
    """A durable blob waiting for its rows (T1)."""

    plan: UploadPlan
    storage_key: str
    size: int
    sha256: str
    mime_type: str
    data_key: GeneratedKey


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


def _check_size(limits: _Limits | UploadPlan, size: int) -> None:
    if size > limits.max_bytes:
        mib = limits.max_bytes // (1024 * 1024)
        raise FileTooLarge(_("Le fichier dépasse la taille maximale autorisée (%(mib)s Mio).", mib=mib))
    if limits.quota_left is not None and size > limits.quota_left:
        raise QuotaExceeded(
            _("Le quota de stockage de votre organisation est atteint : ce fichier ne peut pas être ajouté.")
        )


def _lock_organization(organization_id: int) -> None:
    """Serialise quota checks of one organisation (PostgreSQL: row lock; SQLite: the write
    transaction is IMMEDIATE already, FOR UPDATE is not rendered)."""
    db.session.execute(select(Organization.id).where(Organization.id == organization_id).with_for_update())


def _next_number(file: File) -> int:
    current = db.session.execute(
        select(func.coalesce(func.max(FileVersion.number), 0)).where(FileVersion.file_id == file.id)
    ).scalar_one()
    return int(current) + 1


def key_context(organization_id: int, version_uid: str, file_id: int | None) -> dict[str, str]:
    """The data key's wrapping context; the blob's AAD names the same things."""
    context = {"org": str(organization_id), "version": version_uid}
    if file_id is not None:
        context["file"] = str(file_id)
    return context


def _context_of(version: FileVersion, file: File) -> dict[str, str]:
    """The context a version's key must have been made with; a key or blob moved elsewhere fails."""
    stored = version.data_key.context if version.data_key is not None else {}
    file_id = file.id if isinstance(stored, dict) and "file" in stored else None
    return key_context(file.organization_id, version.uid, file_id)


def release_transaction() -> None:
    """End T0 before a long read (an upload body, a re-encryption).

    Services never commit, except here: a transaction left open while a client sends its body
    would hold SQLite's write lock (unsafe requests begin IMMEDIATE) or leave PostgreSQL
    "idle in transaction" with row locks for minutes. Only reads happened since the
    request began, so committing publishes nothing half-done; the rows come in T1.
    """
    db.session.commit()


def prepare_upload(
    actor: Actor,
    armoire: Armoire,
    folder: Folder | None,
    filename: str,
    declared_size: int | None,
    comment: str | None = None,
    audit_details: dict | None = None,
) -> UploadPlan:
    """T0 of a new file: checks the target and the declared size; writes nothing."""
    if folder is not None and folder.armoire_id != armoire.id:
        raise NotFound(_("Dossier introuvable."))
    limits = _limits(armoire.organization_id, declared_size)
    return UploadPlan(
        actor=actor,
        organization_id=armoire.organization_id,
        armoire_id=armoire.id,
        folder_id=folder.id if folder else None,
        file_id=None,
        filename=sanitize_name(filename),
        uploaded_name=None,
        comment=(comment or "").strip()[:500] or None,
        max_bytes=limits.max_bytes,
        quota_left=limits.quota_left,
        action="file.added",
        audit_details=dict(audit_details or {}),
    )


def prepare_version(
    actor: Actor,
    file: File,
    filename: str | None,
    declared_size: int | None,
    comment: str | None = None,
    audit_details: dict | None = None,
    *,
    restored_from: int | None = None,
) -> UploadPlan:
    """T0 of a new version of ``file``: checks it is live and the declared size; writes nothing."""
    _require_live(file)
    limits = _limits(file.organization_id, declared_size)
    return UploadPlan(
        actor=actor,
        organization_id=file.organization_id,
        armoire_id=file.armoire_id,
        folder_id=file.folder_id,
        file_id=file.id,
        filename=file.name,
        uploaded_name=sanitize_name(filename) if filename else None,
        comment=(comment or "").strip()[:500] or None,
        max_bytes=limits.max_bytes,
        quota_left=limits.quota_left,
        action="version.restored" if restored_from is not None else "file.modified",
        audit_details=dict(audit_details or {}),
        restored_from=restored_from,
    )


def seal_upload(plan: UploadPlan, chunks: Iterable[bytes]) -> SealedUpload:
    """Encrypt ``chunks`` into a durable blob with no transaction open (nothing here touches
    the database: a lazy load would begin a transaction and hold it for the whole stream)."""
    from portal.crypto.envelope import generate_data_key
    from portal.crypto.streaming import associated_data
    from portal.storage.blobs import StorageFullError, get_blob_store

    release_transaction()
    context = key_context(plan.organization_id, plan.version_uid, plan.file_id)
    generated = generate_data_key(plan.organization_id, context)
    aad = associated_data(plan.organization_id, plan.version_uid, plan.file_id)
    store = get_blob_store()
    try:
        with store.create() as pending:
            result = encrypt_pipelined(pending.file, generated.key, aad, chunks, lambda size: _check_size(plan, size))
    except StorageFullError as error:
        logger.error("blob storage full while storing an upload: %s", error)
        raise StorageFull(
            _(
                "L'espace de stockage du serveur est plein : le fichier n'a pas été enregistré. "
                "Prévenez l'administrateur."
            )
        ) from error
    assert pending.key is not None
    return SealedUpload(plan, pending.key, result.size, result.sha256, result.mime_type, generated)


def finish_upload(sealed: SealedUpload) -> FileVersion:
    """T1: lock, re-check the quota on the real size, add the rows and the journal entry (flushed).

    The blob is deleted if anything fails here; if the caller's commit fails, it deletes it.
    """
    from portal.crypto.envelope import save_data_key

    plan = sealed.plan
    try:
        _lock_organization(plan.organization_id)
        quota = _quota(plan.organization_id)
        if quota is not None and used_bytes(plan.organization_id) + sealed.size > quota:
            raise QuotaExceeded(
                _("Le quota de stockage de votre organisation est atteint : ce fichier ne peut pas être ajouté.")
            )
        if plan.file_id is None:
            armoire = db.session.get(Armoire, plan.armoire_id)
            if armoire is None or armoire.organization_id != plan.organization_id:
                raise NotFound(_("Armoire introuvable."))
            folder_id = plan.folder_id
            if folder_id is not None:
                folder = db.session.get(Folder, folder_id)
                if folder is None or folder.armoire_id != armoire.id:
                    raise NotFound(_("Dossier introuvable."))
            file = File(
                organization_id=plan.organization_id,
                armoire_id=armoire.id,
                folder_id=folder_id,
                name=plan.filename,
                created_by_id=plan.actor.user_id,
            )
            db.session.add(file)
            db.session.flush()
        else:
            # Lock the row alone (File's joined relationships cannot be locked on PostgreSQL),
            # then reload it: version numbers are allocated one at a time per file.
            db.session.execute(select(File.id).where(File.id == plan.file_id).with_for_update())
            file = db.session.get(File, plan.file_id, populate_existing=True)
            if file is None or file.organization_id != plan.organization_id:
                raise NotFound(_("Fichier introuvable."))
            _require_live(file)
        data_key = save_data_key(sealed.data_key)
        version = FileVersion(
            uid=plan.version_uid,
            organization_id=plan.organization_id,
            file_id=file.id,
            number=_next_number(file),
            author_id=plan.actor.user_id,
            comment=plan.comment,
            restored_from_version=plan.restored_from,
            storage_key=sealed.storage_key,
            size=sealed.size,
            sha256=sealed.sha256,
            mime_type=sealed.mime_type,
            data_key_id=data_key.id,
        )
        db.session.add(version)
        db.session.flush()
        file.current_version_id = version.id
        file.size = version.size
        file.mime_type = version.mime_type
        file.updated_at = utcnow()
        file.unavailable = False
        db.session.flush()
        details: dict[str, Any] = {"version": version.number, "size": version.size, "sha256": version.sha256}
        if plan.action == "file.added":
            details |= {"mime_type": version.mime_type, "armoire": file.armoire_id, "folder": file.folder_id}
        elif plan.action == "file.modified":
            details |= {"mime_type": version.mime_type, "uploaded_name": plan.uploaded_name}
        else:
            details = {"from_version": plan.restored_from, "version": version.number, "sha256": version.sha256}
        record(
            plan.action,
            plan.actor,
            target_type="file",
            target_id=file.id,
            target_label=_target_label(file),
            details={**details, **plan.audit_details},
        )
    except BaseException:
        delete_blobs([sealed.storage_key])
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
    audit_details: dict | None = None,
) -> FileVersion:
    """Store a new file (version 1) from a stream of plaintext chunks.

    Ends the caller's (read-only) transaction before reading the stream; the rows are
    flushed in a new one that the caller commits (see the section comment above).
    """
    plan = prepare_upload(actor, armoire, folder, filename, declared_size, comment, audit_details)
    return finish_upload(seal_upload(plan, stream_chunks))


def add_version(
    actor: Actor,
    file: File,
    filename: str | None,
    chunks: Iterable[bytes],
    declared_size: int | None,
    comment: str | None = None,
    audit_details: dict | None = None,
) -> FileVersion:
    """Add a new version to ``file``; earlier versions are never touched (same phases as store_upload)."""
    plan = prepare_version(actor, file, filename, declared_size, comment, audit_details)
    return finish_upload(seal_upload(plan, chunks))


def restore_version(actor: Actor, file: File, number: int) -> FileVersion:
    """Create a new version whose content is that of version ``number``."""
    _require_live(file)
    source, stream = open_version_stream(actor, file, number, record_access=False)
    try:
        plan = prepare_version(
            actor, file, None, source.size, f"Restauration de la version {source.number}", restored_from=source.number
        )
        sealed = seal_upload(plan, stream)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return finish_upload(sealed)


# ---------------------------------------------------------------- the encryption pipeline


@dataclass
class EncryptResult:
    size: int
    sha256: str
    mime_type: str


_DONE = object()


def encrypt_pipelined(
    raw: BinaryIO,
    key: bytes,
    aad: bytes,
    chunks: Iterable[bytes],
    check_size: Callable[[int], None],
    depth: int = PIPELINE_DEPTH,
) -> EncryptResult:
    """Encrypt ``chunks`` into ``raw``: this thread reads the chunks (the multipart parser,
    pure Python, holds the GIL); one worker hashes them (SHA-256), another seals (AES-GCM)
    and writes them, each with at most ``depth`` chunks in flight. hashlib, AES-GCM and
    write() release the GIL, so hashing and sealing+writing (about the same cost, measured)
    run on both cores while this thread waits for the socket. Both workers read the same
    chunk objects, which nobody modifies once handed out.

    The workers are always joined before returning or raising: a client that disconnects
    leaves no thread behind.
    """
    from portal.crypto.streaming import EncryptingWriter

    # A new blob is written once and read later: O_DIRECT spares the page cache (see
    # portal.crypto.streaming._DirectSink), and the hash is computed by its own worker.
    writer = EncryptingWriter(raw, key, aad, hash_plaintext=False, direct_io=True)
    digest = hashlib.sha256()
    failure: list[BaseException] = []
    stop = threading.Event()
    queues: list[queue.Queue[object]] = []
    threads: list[threading.Thread] = []

    def consume(work: queue.Queue[object], handle: Callable[[Any], object]) -> None:
        try:
            while True:
                item = work.get()
                if item is _DONE or stop.is_set():
                    return
                handle(item)
                del item  # let the reader reuse the buffer as soon as possible
        except BaseException as error:  # handed to the reading thread
            failure.append(error)
            stop.set()

    # Both named like the single worker they replace: tests look for leftover "coffre-encrypt" threads.
    for name, handle in (("coffre-encrypt", writer.write), ("coffre-encrypt", digest.update)):
        work: queue.Queue[object] = queue.Queue(maxsize=depth)
        queues.append(work)
        threads.append(threading.Thread(target=consume, args=(work, handle), name=name, daemon=True))

    def hand_over(item: object) -> None:
        for work in queues:
            while True:
                if failure:
                    raise failure[0]
                try:
                    work.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue

    for thread in threads:
        thread.start()
    head = bytearray()
    sniffed: str | None = None
    written = 0
    finished = False
    try:
        for chunk in chunks:
            if not chunk:
                continue
            written += len(chunk)
            check_size(written)
            if sniffed is None:
                head.extend(chunk[: MIME_SNIFF_BYTES - len(head)])
                if len(head) >= MIME_SNIFF_BYTES:
                    sniffed = detect_mime(bytes(head))
            hand_over(chunk)
            del chunk
        hand_over(_DONE)
        for thread in threads:
            thread.join()
        if failure:
            raise failure[0]
        writer.finish()
        finished = True
    finally:
        if any(thread.is_alive() for thread in threads):
            stop.set()
            for work in queues:
                # Unblock a worker waiting on an empty queue; drop what it had not handled yet.
                with contextlib.suppress(queue.Empty):
                    while True:
                        work.get_nowait()
                with contextlib.suppress(queue.Full):
                    work.put_nowait(_DONE)
            for thread in threads:
                thread.join()
        if not finished:
            writer.abort()
    return EncryptResult(writer.plaintext_size, digest.hexdigest(), sniffed or detect_mime(bytes(head)))


def prefetch(iterator: Iterator[bytes], depth: int = PIPELINE_DEPTH) -> Iterator[bytes]:
    """Run ``iterator`` (reading and decrypting segments) one step ahead in a worker thread
    while this one writes to the client; closing the generator stops and joins the worker."""
    work: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        work.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:
            failure.append(error)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            while not stop.is_set():
                try:
                    work.put(_DONE, timeout=0.2)
                    break
                except queue.Full:
                    continue

    thread = threading.Thread(target=worker, name="coffre-decrypt", daemon=True)
    thread.start()
    try:
        while True:
            item = work.get()
            if item is _DONE:
                break
            yield item  # type: ignore[misc]
        thread.join()
        if failure:
            raise failure[0]
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                work.get_nowait()
        thread.join()


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
            key = open_data_key(version.data_key, _context_of(version, file))
        except (KeyShredded, KeyUnavailable) as error:
            raise ContentUnavailable(_("La clé de ce contenu est indisponible ou a été détruite.")) from error
        try:
            if plaintext_length(os.fstat(raw.fileno()).st_size) != version.size:
                raise IntegrityError("stored size does not match the recorded size")
            context = _context_of(version, file)
            file_id = int(context["file"]) if "file" in context else None
            aad = associated_data(file.organization_id, version.uid, file_id)
            chunks = decrypt_stream(raw, key, aad, start, end)
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
            # Decrypt the next segments while this thread sends the previous one.
            yield from prefetch(chunks)
        finally:
            chunks.close()
            raw.close()

    return version, stream()


def associated_data(organization_id: int, version_uid: str, file_id: int | None = None) -> bytes:
    from portal.crypto.streaming import associated_data as crypto_aad

    return crypto_aad(organization_id, version_uid, file_id)


def record_download(actor: Actor, file_id: int, file_name: str, version_number: int, *, preview: bool) -> None:
    """Journal a download or preview (callers that use ``record_access=False``)."""
    record(
        "file.downloaded",
        actor,
        target_type="file",
        target_id=file_id,
        target_label=file_name,
        details={"version": version_number, "preview": preview} if preview else {"version": version_number},
    )


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
