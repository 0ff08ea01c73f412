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

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask_babel import gettext as _
from sqlalchemy import func, select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.crypto.pipeline import encrypt_pipelined
from portal.database import end_read_phase, utcnow
from portal.documents.errors import (
    NotFound,
    QuotaExceeded,
    StorageFull,
    StorageUnavailable,
)
from portal.documents.models import Armoire, File, FileVersion, Folder
from portal.documents.services import conflicts
from portal.documents.services.names import MIME_SNIFF_BYTES, detect_mime, sanitize_name
from portal.documents.services.quota import check_size, committed_bytes, lock_organization, upload_limits
from portal.documents.services.reading import open_version_stream
from portal.documents.services.versions import key_context, require_live
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


def _next_number(file: File) -> int:
    current = db.session.execute(
        select(func.coalesce(func.max(FileVersion.number), 0)).where(FileVersion.file_id == file.id)
    ).scalar_one()
    return int(current) + 1


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


def finish_upload(sealed: SealedUpload) -> FileVersion:
    """T1: lock, re-check the quota on the real size, add the rows and the journal entry (flushed).

    The blob is deleted if anything fails here; if the caller's commit fails, it deletes it.
    """
    from portal.crypto.envelope import save_data_key

    plan = sealed.plan
    try:
        quota = lock_organization(plan.organization_id)
        if quota is not None and committed_bytes(plan.organization_id, plan.version_uid) + sealed.size > quota:
            raise QuotaExceeded(
                _("Le quota de stockage de votre organisation est atteint : ce fichier ne peut pas être ajouté.")
            )
        file_id, name, action, uploaded_name = plan.file_id, plan.filename, plan.action, plan.uploaded_name
        if file_id is None and plan.on_conflict is not None:
            # Under the organisation lock: a concurrent upload of the same name has committed or waits.
            existing = conflicts.find_live_file(plan.armoire_id, plan.folder_id, plan.filename)
            if existing is not None:
                if plan.on_conflict == "refuse":
                    raise conflicts.refuse(existing)
                if plan.on_conflict == "rename":
                    name = conflicts.free_name(plan.armoire_id, plan.folder_id, plan.filename)
                else:
                    file_id, action, uploaded_name = existing.id, "file.modified", plan.filename
        if file_id is None:
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
                name=name,
                created_by_id=plan.actor.user_id,
            )
            db.session.add(file)
            db.session.flush()
        else:
            # Lock the row alone (File's joined relationships cannot be locked on PostgreSQL),
            # then reload it: version numbers are allocated one at a time per file. NO KEY
            # UPDATE lets inserts that reference the file (its version row) take KEY SHARE.
            db.session.execute(select(File.id).where(File.id == file_id).with_for_update(key_share=True))
            file = db.session.get(File, file_id, populate_existing=True)
            if file is None or file.organization_id != plan.organization_id:
                raise NotFound(_("Fichier introuvable."))
            require_live(file)
        data_key_id = save_data_key(sealed.data_key).id if sealed.data_key is not None else sealed.data_key_id
        version = FileVersion(
            uid=plan.version_uid,
            organization_id=plan.organization_id,
            file_id=file.id,
            # A file created just above has no version yet.
            number=_next_number(file) if file_id is not None else 1,
            author_id=plan.actor.user_id,
            comment=plan.comment,
            restored_from_version=plan.restored_from,
            storage_key=sealed.storage_key,
            size=sealed.size,
            sha256=sealed.sha256,
            mime_type=sealed.mime_type,
            data_key_id=data_key_id,
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
        if action == "file.added":
            details |= {"mime_type": version.mime_type, "armoire": file.armoire_id, "folder": file.folder_id}
            if name != plan.filename:
                details["uploaded_name"] = plan.filename
        elif action == "file.modified":
            details |= {"mime_type": version.mime_type, "uploaded_name": uploaded_name}
        else:
            details = {"from_version": plan.restored_from, "version": version.number, "sha256": version.sha256}
        record(
            action,
            plan.actor,
            target_type="file",
            target_id=file.id,
            target_label=file.name,
            details={**details, **plan.audit_details},
        )
    except BaseException:
        delete_blobs([sealed.storage_key])
        raise
    return version


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
