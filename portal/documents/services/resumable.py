"""Resumable uploads (tus 1.0): create, receive a part, complete, terminate, expire.

An upload is created with its total length; a data key is made and stored then, and the
partial blob (``storage.blobs`` ``resumable/``) gets its header. Each PATCH resumes the
encrypting writer from the file (``crypto.resumable``), seals what arrives segment by
segment and fsyncs before answering, so what was sealed survives a cut. The request that
seals the last byte promotes the blob and adds the file and version rows through
``uploads.finish_upload`` (quota, name conflict, journal) in one short transaction: the
receipt exists only once the last byte is sealed, fsynced and committed, as for a
one-request upload. Phases, as in ``uploads``: reads, then no transaction while the body
arrives (``release_transaction``), then T1.

One request at a time per upload: the partial blob is locked with ``flock`` (423 otherwise),
across processes. An unfinished upload expires 24 hours after its creation (``expire``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from flask_babel import gettext as _
from sqlalchemy import delete, select

from portal.audit.context import Actor
from portal.crypto import resumable as sealing
from portal.crypto.errors import CryptoError, KeyShredded, KeyUnavailable
from portal.database import utcnow
from portal.documents.errors import (
    ChecksumMismatch,
    ContentUnavailable,
    DocumentError,
    FileTooLarge,
    Locked,
    MalformedUpload,
    NotFound,
    UploadGone,
    UploadOffsetMismatch,
)
from portal.documents.models import Armoire, Folder, ResumableUpload
from portal.documents.services import conflicts, uploads
from portal.documents.services.names import MIME_SNIFF_BYTES, detect_mime, sanitize_name
from portal.documents.services.quota import check_size, lock_organization, upload_limits
from portal.documents.services.versions import key_context
from portal.extensions import db

logger = logging.getLogger(__name__)

EXPIRY = timedelta(hours=24)
# How long a finished upload's receipt stays readable (GET /api/v1/uploads/<id>).
RECEIPT_KEPT = timedelta(days=7)
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")


@dataclass(frozen=True)
class Progress:
    offset: int
    length: int
    file_id: int | None = None
    version: int | None = None


def _aad(upload: ResumableUpload) -> bytes:
    from portal.crypto.streaming import associated_data

    # Bound to the organisation and the future version, not to a file: which file it joins
    # (a new one, or an existing one for on_conflict=version) is decided only at the end.
    return associated_data(upload.organization_id, upload.version_uid, None)


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """tus checksum extension: ``Upload-Checksum: <algorithm> <base64 digest>``."""
    if header is None:
        return None
    algorithm, _space, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise MalformedUpload(_("Algorithme de somme de contrôle non pris en charge."))
    try:
        return algorithm, base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedUpload(_("La somme de contrôle n'est pas en base64.")) from None


def create(
    actor: Actor,
    user_id: int,
    armoire: Armoire,
    folder: Folder | None,
    filename: str,
    length: int,
    on_conflict: str,
    delete_after_upload: bool,
    via: str,
) -> ResumableUpload:
    """Register an upload of ``length`` bytes and write its blob header; flushes the row.

    The size and the quota are checked now, under the organisation lock, and the row then
    reserves ``length`` until the upload completes, is terminated or expires (the quota is
    checked again at the end). If the caller's commit fails, it removes the partial blob
    (``discard_blob``)."""
    from portal.crypto.envelope import new_data_key
    from portal.storage.blobs import get_blob_store

    if folder is not None and folder.armoire_id != armoire.id:
        raise NotFound(_("Dossier introuvable."))
    # Held until the caller commits the row: a parallel creation then sees this reservation.
    lock_organization(armoire.organization_id)
    check_size(upload_limits(armoire.organization_id, length), length)
    upload = ResumableUpload(
        organization_id=armoire.organization_id,
        user_id=user_id,
        armoire_id=armoire.id,
        folder_id=folder.id if folder else None,
        filename=sanitize_name(filename),
        length=length,
        on_conflict=conflicts.parse_on_conflict(on_conflict),
        delete_after_upload=delete_after_upload,
        via=via,
        expires_at=utcnow() + EXPIRY,
        # Set now, not at flush: the data key's context and the blob's AAD need them first.
        uid=secrets.token_hex(16),
        version_uid=secrets.token_hex(16),
        blob_key=secrets.token_hex(16),
    )
    data_key, key = new_data_key(
        armoire.organization_id, key_context(armoire.organization_id, upload.version_uid, None)
    )
    upload.data_key_id = data_key.id
    db.session.add(upload)
    db.session.flush()
    raw = get_blob_store().create_resumable(upload.blob_key)
    try:
        with raw:
            sealing.ResumableWriter.create(raw, key, _aad(upload), length)
    except BaseException:
        get_blob_store().delete_resumable(upload.blob_key)
        raise
    return upload


def get(organization_id: int, user_id: int, uid: str) -> ResumableUpload:
    """The caller's own upload; anyone else's (or an unknown id) is NotFound."""
    upload = db.session.execute(
        select(ResumableUpload).where(ResumableUpload.uid == uid, ResumableUpload.organization_id == organization_id)
    ).scalar_one_or_none()
    if upload is None or upload.user_id != user_id:
        raise NotFound(_("Cet envoi n'existe pas."))
    return upload


def require_open(upload: ResumableUpload) -> None:
    if upload.completed_at is None and upload.expires_at <= utcnow():
        raise UploadGone(_("Cet envoi a expiré : recommencez-le."))


def offset_of(upload: ResumableUpload) -> int:
    """The durable offset, read from the partial blob's size (no lock needed)."""
    from portal.storage.blobs import get_blob_store

    if upload.completed_at is not None:
        return upload.length
    size = get_blob_store().resumable_size(upload.blob_key)
    if size is None:
        raise UploadGone(_("Cet envoi a expiré : recommencez-le."))
    return sealing.durable_offset(size, upload.length)


@contextlib.contextmanager
def _locked_blob(blob_key: str) -> Iterator[BinaryIO]:
    from portal.storage.blobs import get_blob_store

    try:
        raw = get_blob_store().open_resumable(blob_key)
    except FileNotFoundError:
        raise UploadGone(_("Cet envoi a expiré : recommencez-le.")) from None
    with raw:
        try:
            fcntl.flock(raw.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(_("Cet envoi est déjà en cours dans une autre requête ; réessayez dans un instant.")) from None
        yield raw


def _data_key(upload: ResumableUpload) -> bytes:
    from portal.crypto.envelope import open_data_key

    if upload.data_key is None:
        raise ContentUnavailable(_("La clé de cet envoi est indisponible."))
    try:
        return open_data_key(upload.data_key, key_context(upload.organization_id, upload.version_uid, None))
    except (KeyShredded, KeyUnavailable) as error:
        raise ContentUnavailable(_("La clé de cet envoi est indisponible.")) from error


def receive(
    actor: Actor,
    upload: ResumableUpload,
    offset: int,
    chunks: Iterable[bytes],
    checksum: tuple[str, bytes] | None,
    audit_details: dict | None = None,
) -> Progress:
    """Append the body of one PATCH starting at ``offset``.

    Whatever is sealed when the body ends (even cut short) is fsynced before this returns or
    raises UploadInterrupted; with a checksum, a cut or mismatching body keeps nothing of
    this request. When the last byte is sealed, the file and version rows are flushed (the
    caller commits, or calls ``abandon`` after a DocumentError)."""
    require_open(upload)
    if upload.completed_at is not None:
        raise UploadOffsetMismatch(_("Cet envoi est déjà terminé."), offset=upload.length)
    key = _data_key(upload)
    aad = _aad(upload)
    uid, blob_key, length = upload.uid, upload.blob_key, upload.length
    plan = uploads.UploadPlan(
        actor=actor,
        organization_id=upload.organization_id,
        armoire_id=upload.armoire_id,
        folder_id=upload.folder_id,
        file_id=None,
        filename=upload.filename,
        uploaded_name=None,
        comment=None,
        max_bytes=length,
        quota_left=None,
        action="file.added",
        audit_details={**(audit_details or {}), "resumable": True},
        on_conflict=upload.on_conflict,
        version_uid=upload.version_uid,
    )
    data_key_id, upload_id = upload.data_key_id, upload.id
    # No transaction while the body arrives (see uploads.release_transaction).
    uploads.release_transaction()
    with _locked_blob(blob_key) as raw:
        try:
            writer = sealing.ResumableWriter.resume(raw, key, aad, length, cache_key=uid)
        except CryptoError as error:
            raise ContentUnavailable(_("Le début de cet envoi est illisible : recommencez-le.")) from error
        if offset != writer.offset:
            raise UploadOffsetMismatch(
                _("L'envoi reprend à l'octet %(offset)s.", offset=writer.offset), offset=writer.offset
            )
        checkpoint = writer.checkpoint()
        hasher = hashlib.new(checksum[0]) if checksum else None
        try:
            for chunk in chunks:
                if writer.received + len(chunk) > length:
                    raise FileTooLarge(_("Le contenu dépasse la taille annoncée à la création de l'envoi."))
                if hasher is not None:
                    hasher.update(chunk)
                writer.write(chunk)
            writer.finish_empty()
        except BaseException:
            # Keep what is sealed (unless it cannot be verified), durably, for the next try.
            if hasher is not None:
                writer.restore(checkpoint, cache_key=uid)
            else:
                writer.drop_unsealed()
            writer.sync(cache_key=uid)
            raise
        if hasher is not None and checksum is not None and hasher.digest() != checksum[1]:
            writer.restore(checkpoint, cache_key=uid)
            writer.sync(cache_key=uid)
            raise ChecksumMismatch(_("La somme de contrôle ne correspond pas : cette partie n'a pas été gardée."))
        writer.drop_unsealed()
        writer.sync(cache_key=uid)
        if not writer.complete:
            return Progress(writer.offset, length)
        sha256 = writer.sha256
        head = _head(raw, key, aad)
        from portal.storage.blobs import get_blob_store

        storage_key = get_blob_store().promote_resumable(blob_key)
    sealed = uploads.SealedUpload(
        plan, storage_key, length, sha256, detect_mime(head), data_key=None, data_key_id=data_key_id
    )
    # T1: finish_upload deletes the promoted blob if anything fails.
    try:
        version = uploads.finish_upload(sealed)
    except DocumentError as error:
        # The bytes are gone with the blob: the caller removes the upload (``abandon``).
        error.abandons_upload = True  # type: ignore[attr-defined]
        raise
    row = db.session.get(ResumableUpload, upload_id)
    if row is None:
        # Terminated meanwhile: the rows just added go with the rollback, the blob goes now.
        from portal.storage.blobs import delete_blobs

        delete_blobs([storage_key])
        raise UploadGone(_("Cet envoi a été annulé."))
    row.completed_at = utcnow()
    row.file_id = version.file_id
    row.version_id = version.id
    # The receipt stays readable for a while after the end.
    row.expires_at = row.completed_at + RECEIPT_KEPT
    db.session.flush()
    return Progress(length, length, version.file_id, version.number)


def _head(raw: BinaryIO, key: bytes, aad: bytes) -> bytes:
    """The first bytes of the plaintext, for type sniffing (the whole blob authenticates)."""
    from portal.crypto.streaming import decrypt_stream, plaintext_length

    total = plaintext_length(os.fstat(raw.fileno()).st_size)
    return b"".join(decrypt_stream(raw, key, aad, 0, min(total, MIME_SNIFF_BYTES)))


def abandon(uid: str) -> None:
    """After a refused completion (quota, name conflict) or a termination: the upload is
    removed with its data key and partial blob; flushes, the caller commits."""
    from portal.crypto.models import DataKey
    from portal.storage.blobs import get_blob_store

    upload = db.session.execute(select(ResumableUpload).where(ResumableUpload.uid == uid)).scalar_one_or_none()
    if upload is None:
        return
    blob_key, data_key_id, completed = upload.blob_key, upload.data_key_id, upload.completed_at is not None
    db.session.delete(upload)
    db.session.flush()
    if not completed:
        # The key never protected a committed version (a finished upload's key is its version's).
        if data_key_id is not None:
            db.session.execute(delete(DataKey).where(DataKey.id == data_key_id))
        sealing.forget(uid)
        get_blob_store().delete_resumable(blob_key)


def terminate(upload: ResumableUpload) -> None:
    """tus termination: stop an upload and free its space (a finished one only loses its receipt)."""
    uid, blob_key, completed = upload.uid, upload.blob_key, upload.completed_at is not None
    if completed:
        abandon(uid)
        return
    with _locked_blob(blob_key):
        abandon(uid)


def receipt(upload: ResumableUpload) -> dict:
    from portal.documents.models import File, FileVersion

    body: dict = {
        "upload_id": upload.uid,
        "length": upload.length,
        "complete": upload.completed_at is not None,
        "filename": upload.filename,
        "armoire_id": upload.armoire_id,
        "folder_id": upload.folder_id,
        "on_conflict": upload.on_conflict,
        "expires_at": upload.expires_at,
    }
    if upload.completed_at is None:
        body["offset"] = offset_of(upload)
        return body
    version = db.session.get(FileVersion, upload.version_id) if upload.version_id else None
    file = db.session.get(File, upload.file_id) if upload.file_id else None
    body["offset"] = upload.length
    if version is not None and file is not None:
        body |= {
            "file_id": file.id,
            "version": version.number,
            "size": version.size,
            "sha256": version.sha256,
            "delete_local": upload.delete_after_upload,
            "name": file.name,
            "mime_type": version.mime_type,
            "created_at": version.created_at,
        }
    return body


def expire(now: datetime | None = None) -> int:
    """Remove unfinished uploads past their 24 hours (row, data key, partial blob), receipts
    past their week, and partial blobs no row names any more (a commit that failed after the
    header was written). Flushes; returns how many partial blobs were removed."""
    from portal.storage.blobs import get_blob_store

    now = now or utcnow()
    removed = 0
    stale = db.session.execute(select(ResumableUpload).where(ResumableUpload.expires_at <= now)).scalars().all()
    for upload in stale:
        if upload.completed_at is None:
            removed += 1
        abandon(upload.uid)
    known = set(db.session.execute(select(ResumableUpload.blob_key)).scalars())
    cutoff = now.timestamp() - EXPIRY.total_seconds()
    store = get_blob_store()
    for key, mtime in list(store.iter_resumable()):
        if key not in known and mtime <= cutoff:
            store.delete_resumable(key)
            removed += 1
    return removed
