"""Writing versions: new files, new versions and restores, in three phases.

An upload runs in three steps so that no transaction is open while the body arrives:
  T0  prepare_upload / prepare_version: reads only (targets, permissions done by the view,
      size and quota pre-check on the declared size) -> UploadPlan of plain values;
  --  seal_upload: ends T0 (release_transaction), makes the data key without the database,
      encrypts the stream into a pending blob, fsync + rename -> SealedUpload;
  T1  finish_upload: short; locks the organisation (quota) and the file (numbering),
      re-checks the quota on the real size, inserts the rows and the journal entry,
      flushes; the view commits. Any failure from here deletes the blob.

The blob is written, fsynced and renamed before its rows are added; if the caller's commit
then fails, it deletes the blobs of the versions it created
(``portal.storage.blobs.delete_blobs([v.storage_key ...])``).
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask_babel import gettext as _
from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from portal.audit.context import Actor
from portal.audit.services import record
from portal.crypto.pipeline import encrypt_pipelined
from portal.database import end_read_phase, utcnow
from portal.documents.errors import (
    FileNameTaken,
    NotFound,
    QuotaExceeded,
    StorageFull,
    StorageUnavailable,
)
from portal.documents.models import Armoire, File, FileVersion, Folder, _configured_backend
from portal.documents.services import conflicts
from portal.documents.services.names import MIME_SNIFF_BYTES, detect_mime, name_for_new_version, sanitize_name
from portal.documents.services.quota import check_size, lock_and_measure, upload_limits
from portal.documents.services.reading import open_version_stream
from portal.documents.services.versions import key_context, require_live
from portal.documents.sortkey import sort_key
from portal.extensions import db
from portal.security.text import clean_name
from portal.storage.blobs import delete_blobs

if TYPE_CHECKING:
    from portal.crypto.envelope import GeneratedKey

logger = logging.getLogger(__name__)


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
    # A new file's name taken in its folder: version | rename | refuse (documents.services.conflicts);
    # None keeps both under the same name (the behaviour before name conflicts were handled).
    on_conflict: str | None = None
    version_uid: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class SealedUpload:
    """A durable blob waiting for its rows (T1)."""

    plan: UploadPlan
    storage_key: str
    size: int
    sha256: str
    mime_type: str
    data_key: GeneratedKey | None
    # A key stored before the body arrived (a resumable upload), instead of ``data_key``.
    data_key_id: int | None = None


def release_transaction() -> None:
    """End T0 before a long read (an upload body, a re-encryption).

    Services never commit, except here: a transaction left open while a client sends its body
    would hold SQLite's write lock (unsafe requests begin IMMEDIATE) or leave PostgreSQL
    "idle in transaction" with row locks for minutes. Only reads happened since the
    request began, so committing publishes nothing half-done; the rows come in T1, which
    begins IMMEDIATE again on SQLite even in a ``reads_first`` view.
    """
    db.session.commit()
    end_read_phase()


def prepare_upload(
    actor: Actor,
    armoire: Armoire,
    folder: Folder | None,
    filename: str,
    declared_size: int | None,
    comment: str | None = None,
    audit_details: dict | None = None,
    on_conflict: str | None = None,
) -> UploadPlan:
    """T0 of a new file: checks the target and the declared size; writes nothing."""
    if folder is not None and folder.armoire_id != armoire.id:
        raise NotFound(_("Dossier introuvable."))
    limits = upload_limits(armoire.organization_id, declared_size)
    return UploadPlan(
        actor=actor,
        organization_id=armoire.organization_id,
        armoire_id=armoire.id,
        folder_id=folder.id if folder else None,
        file_id=None,
        filename=sanitize_name(filename),
        uploaded_name=None,
        comment=clean_name(comment)[:500] or None,
        max_bytes=limits.max_bytes,
        quota_left=limits.quota_left,
        action="file.added",
        audit_details=dict(audit_details or {}),
        on_conflict=on_conflict,
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
    require_live(file)
    limits = upload_limits(file.organization_id, declared_size)
    return UploadPlan(
        actor=actor,
        organization_id=file.organization_id,
        armoire_id=file.armoire_id,
        folder_id=file.folder_id,
        file_id=file.id,
        filename=file.name,
        uploaded_name=sanitize_name(filename) if filename else None,
        comment=clean_name(comment)[:500] or None,
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
    from portal.storage.blobs import StorageFullError, StorageUnavailableError, get_blob_store

    release_transaction()
    context = key_context(plan.organization_id, plan.version_uid, plan.file_id)
    generated = generate_data_key(plan.organization_id, context)
    aad = associated_data(plan.organization_id, plan.version_uid, plan.file_id)
    store = get_blob_store()
    try:
        with store.create() as pending:
            result = encrypt_pipelined(
                pending.file,
                generated.key,
                aad,
                chunks,
                lambda size: check_size(plan, size),
                head_bytes=MIME_SNIFF_BYTES,
            )
    except StorageFullError as error:
        logger.error("blob storage full while storing an upload: %s", error)
        raise StorageFull(
            _(
                "L'espace de stockage du serveur est plein : le fichier n'a pas été enregistré. "
                "Prévenez l'administrateur."
            )
        ) from error
    except StorageUnavailableError as error:
        # The store aborted the multipart upload: no part and no row stay behind.
        logger.error("blob store unavailable while storing an upload: %s", error)
        raise StorageUnavailable(
            _("Le stockage des fichiers ne répond pas pour le moment : réessayez dans quelques minutes.")
        ) from error
    assert pending.key is not None
    return SealedUpload(plan, pending.key, result.size, result.sha256, detect_mime(result.head), generated)


@functools.cache
def _new_file_insert(in_folder: bool, name_free: bool = False) -> Any:
    """INSERT of a new file that checks its armoire (and folder) in the same statement: the
    row is inserted only if they still exist in the organisation, else nothing comes back.
    With ``name_free`` it also checks that no live file of the folder has that name
    (``on_conflict=refuse``): the check costs no statement of its own on the common path.

    Built once per shape. Every upload's final transaction runs under SQLite's write lock (or
    the organisation's row lock), so its Python cost is paid by every other writer waiting:
    building, hashing and flushing ORM statements was most of it (issue 10, D15)."""
    files, armoires, folders = File.__table__, Armoire.__table__, Folder.__table__
    where = [armoires.c.id == bindparam("armoire_id"), armoires.c.organization_id == bindparam("organization_id")]
    if in_folder:
        where.append(exists().where(folders.c.id == bindparam("folder_id"), folders.c.armoire_id == armoires.c.id))
    if name_free:
        same = files.alias("same_name")
        where.append(
            ~exists().where(
                same.c.armoire_id == armoires.c.id,
                same.c.folder_id == bindparam("folder_id") if in_folder else same.c.folder_id.is_(None),
                same.c.name == bindparam("name"),
                same.c.deleted_at.is_(None),
                same.c.purged_at.is_(None),
            )
        )
    source = select(
        *(bindparam(name, type_=files.c[name].type) for name in _NEW_FILE_COLUMNS if name != "armoire_id"),
        armoires.c.id,
    ).where(*where)
    columns = [name for name in _NEW_FILE_COLUMNS if name != "armoire_id"] + ["armoire_id"]
    return files.insert().from_select(columns, source).returning(files.c.id)


_NEW_FILE_COLUMNS = (
    "organization_id",
    "armoire_id",
    "folder_id",
    "name",
    "name_key",
    "size",
    "mime_type",
    "created_by_id",
    "created_at",
    "updated_at",
    "unavailable",
)


@functools.cache
def _statements() -> Any:
    files, versions = File.__table__, FileVersion.__table__
    # The file's row lock (NO KEY UPDATE lets inserts that reference the file, its version
    # row, take KEY SHARE), read with what the version needs: its next number among them.
    next_number = (
        select(func.coalesce(func.max(versions.c.number), 0) + 1)
        .where(versions.c.file_id == files.c.id)
        .scalar_subquery()
    )
    lock_file = (
        select(
            files.c.organization_id,
            files.c.armoire_id,
            files.c.folder_id,
            files.c.name,
            files.c.deleted_at,
            files.c.purged_at,
            next_number.label("next_number"),
        )
        .where(files.c.id == bindparam("file_id"))
        .with_for_update(key_share=True)
    )
    insert_version = versions.insert().returning(versions.c.id)
    point_file = (
        files.update()
        .where(files.c.id == bindparam("file_id"))
        .values(
            current_version_id=bindparam("version_id"),
            size=bindparam("new_size"),
            mime_type=bindparam("new_mime_type"),
            updated_at=bindparam("now"),
            unavailable=False,
        )
    )
    return lock_file, insert_version, point_file


def finish_upload(sealed: SealedUpload) -> FileVersion:
    """T1: lock, re-check the quota on the real size, add the rows and the journal entry (flushed).

    The rows are Core statements, not ORM objects (see ``_new_file_insert``); the version
    handed back is in the session as if read from its row. The blob is deleted if anything fails here;
    if the caller's commit fails, it deletes it.
    """
    from portal.crypto.envelope import insert_data_key
    from portal.dashboard import storage

    plan = sealed.plan
    try:
        quota, committed = lock_and_measure(plan.organization_id, plan.version_uid)
        if quota is not None and committed + sealed.size > quota:
            raise QuotaExceeded(
                _("Le quota de stockage de votre organisation est atteint : ce fichier ne peut pas être ajouté.")
            )
        file_id, name, action, uploaded_name = plan.file_id, plan.filename, plan.action, plan.uploaded_name
        renamed_from: str | None = None  # a new version of another type renames its file
        # Under the organisation lock: a concurrent upload of the same name has committed or
        # waits. ``refuse`` is checked by the INSERT itself (_new_file_insert).
        if file_id is None and plan.on_conflict in ("version", "rename"):
            existing = conflicts.find_live_file(plan.armoire_id, plan.folder_id, plan.filename)
            if existing is not None:
                if plan.on_conflict == "rename":
                    name = conflicts.free_name(plan.armoire_id, plan.folder_id, plan.filename)
                else:
                    file_id, action, uploaded_name = existing.id, "file.modified", plan.filename
        lock_file, insert_version, point_file = _statements()
        now = utcnow()
        if file_id is None:
            armoire_id, folder_id, number = plan.armoire_id, plan.folder_id, 1
            file_id = db.session.execute(
                _new_file_insert(folder_id is not None, plan.on_conflict == "refuse"),
                {
                    "organization_id": plan.organization_id,
                    "armoire_id": armoire_id,
                    "folder_id": folder_id,
                    "name": name,
                    "name_key": sort_key(name),
                    "size": sealed.size,
                    "mime_type": sealed.mime_type,
                    "created_by_id": plan.actor.user_id,
                    "created_at": now,
                    "updated_at": now,
                    "unavailable": False,
                },
            ).scalar()
            if file_id is None:
                if plan.on_conflict == "refuse":
                    existing = conflicts.find_live_file(armoire_id, folder_id, name)
                    if existing is not None:
                        raise conflicts.refuse(existing)
                raise NotFound(_("Dossier introuvable.") if folder_id is not None else _("Armoire introuvable."))
            new_files = 1
        else:
            # Version numbers are allocated one at a time per file, under this lock.
            row = db.session.execute(lock_file, {"file_id": file_id}).first()
            if row is None or row.organization_id != plan.organization_id:
                raise NotFound(_("Fichier introuvable."))
            require_live(row)
            armoire_id, folder_id, name, number = row.armoire_id, row.folder_id, row.name, row.next_number
            new_files = 0
            if action == "file.modified":
                renamed_from, name = name, _rename_for_type(file_id, armoire_id, folder_id, name, uploaded_name)
        data_key_id = insert_data_key(sealed.data_key) if sealed.data_key is not None else sealed.data_key_id
        values = {
            "uid": plan.version_uid,
            "organization_id": plan.organization_id,
            "file_id": file_id,
            "number": number,
            "size": sealed.size,
            "sha256": sealed.sha256,
            "mime_type": sealed.mime_type,
            "author_id": plan.actor.user_id,
            "created_at": now,
            "comment": plan.comment,
            "storage_key": sealed.storage_key,
            "storage_backend": _configured_backend(),
            "data_key_id": data_key_id,
            "restored_from_version": plan.restored_from,
            "blob_missing": False,
        }
        version_id = db.session.execute(insert_version, values).scalar_one()
        db.session.execute(
            point_file,
            {
                "file_id": file_id,
                "version_id": version_id,
                "new_size": sealed.size,
                "new_mime_type": sealed.mime_type,
                "now": now,
            },
        )
        # What the ORM events count for a File and a FileVersion inserted through the session.
        storage.add(db.session.connection(), plan.organization_id, armoire_id, new_files, 1, sealed.size)
        _expire_file(file_id)
        details: dict[str, Any] = {"version": number, "size": sealed.size, "sha256": sealed.sha256}
        if action == "file.added":
            details |= {"mime_type": sealed.mime_type, "armoire": armoire_id, "folder": folder_id}
            if name != plan.filename:
                details["uploaded_name"] = plan.filename
        elif action == "file.modified":
            details |= {"mime_type": sealed.mime_type, "uploaded_name": uploaded_name}
        else:
            details = {"from_version": plan.restored_from, "version": number, "sha256": sealed.sha256}
        record(
            action,
            plan.actor,
            target_type="file",
            target_id=file_id,
            target_label=name,
            details={**details, **plan.audit_details},
        )
        if renamed_from is not None and renamed_from != name:
            record(
                "file.renamed",
                plan.actor,
                target_type="file",
                target_id=file_id,
                target_label=name,
                details={"from": renamed_from, "to": name, "reason": "new_version_type", "version": number},
            )
    except BaseException:
        delete_blobs([sealed.storage_key])
        raise
    version = FileVersion(id=version_id, **values)
    # In the session as if loaded from its row: its relationships (data key, author) load
    # on demand, and nothing is written for it at the flush.
    make_transient_to_detached(version)
    db.session.add(version)
    return version


def _rename_for_type(file_id: int, armoire_id: int, folder_id: int | None, name: str, uploaded: str | None) -> str:
    """A new version of another type takes its extension (names.name_for_new_version); the
    new name must be free in the folder (409 otherwise, nothing stored). Under the file's
    and the organisation's locks, like every name decision of an upload."""
    new = name_for_new_version(name, uploaded)
    if new == name:
        return name
    existing = conflicts.find_live_file(armoire_id, folder_id, new)
    if existing is not None and existing.id != file_id:
        message = _(
            "Cette version renommerait le fichier en « %(name)s » (son type change), mais un fichier porte "
            "déjà ce nom dans ce dossier.",
            name=new,
        )
        raise FileNameTaken(message, existing_file_id=existing.id)
    db.session.execute(
        File.__table__.update().where(File.__table__.c.id == file_id).values(name=new, name_key=sort_key(new))
    )
    return new


def _expire_file(file_id: int) -> None:
    """A copy of the file loaded earlier in this session (the conflict check's) no longer
    matches its row: the next read reloads it."""
    loaded = db.session.identity_map.get(identity_key(File, file_id))
    if loaded is not None:
        db.session.expire(loaded)


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
    require_live(file)
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
