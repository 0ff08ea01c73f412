"""Reading versions: authenticated, decrypting streams and the journal entries of access."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.audit.services import record
from portal.crypto.pipeline import prefetch
from portal.documents.errors import (
    ContentUnavailable,
    IntegrityFailure,
    NotFound,
)
from portal.documents.models import File, FileVersion
from portal.documents.services.versions import context_of, get_version

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


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
            key = open_data_key(version.data_key, context_of(version, file))
        except (KeyShredded, KeyUnavailable) as error:
            raise ContentUnavailable(_("La clé de ce contenu est indisponible ou a été détruite.")) from error
        try:
            if plaintext_length(os.fstat(raw.fileno()).st_size) != version.size:
                raise IntegrityError("stored size does not match the recorded size")
            context = context_of(version, file)
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
            target_label=file.name,
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
        target_label=file.name,
        details={"version": version.number if version else None, "detail": detail[:200]},
    )
