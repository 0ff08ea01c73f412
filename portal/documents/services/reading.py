"""Reading versions: authenticated, decrypting streams and the journal entries of access."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import timedelta

from flask import Flask, current_app
from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.audit.services import record
from portal.crypto.pipeline import decrypt_ahead
from portal.database import write_transaction
from portal.documents.errors import (
    ContentUnavailable,
    IntegrityFailure,
    NotFound,
    StorageUnavailable,
)
from portal.documents.models import File, FileVersion
from portal.documents.services.versions import context_of, get_version
from portal.extensions import db

logger = logging.getLogger(__name__)

# Previews of one file by one member closer together than this are one consultation.
VIEW_WINDOW_SECONDS = 60
# Ranges up to this many bytes (two segments) are decrypted by the sending thread alone:
# starting and joining a worker would cost more than it overlaps.
DECRYPT_AHEAD_BYTES = 2 << 20


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
    IntegrityFailure here rather than after response headers were sent; the caller rolls
    back and calls ``journal_integrity_failure``. A later segment that fails makes the
    stream journal it by itself (see ``journal_integrity_failure``) and raise
    IntegrityFailure: consume the stream with no write transaction open.
    """
    from portal.crypto.envelope import open_data_key
    from portal.crypto.errors import CryptoError, IntegrityError, KeyShredded, KeyUnavailable
    from portal.crypto.streaming import decrypt_stream, plaintext_length
    from portal.storage.blobs import StorageUnavailableError, get_blob_store

    if file.purged_at is not None:
        raise NotFound(_("Ce fichier a été détruit."))
    version = get_version(file, version_number)
    if not version.storage_key or version.blob_missing or version.data_key is None:
        raise ContentUnavailable(_("Le contenu de cette version n'est plus disponible."))
    store = get_blob_store(version.storage_backend)
    try:
        raw = store.open(version.storage_key)
    except FileNotFoundError as error:
        raise ContentUnavailable(_("Le contenu de cette version est introuvable dans le stockage.")) from error
    except StorageUnavailableError as error:
        raise StorageUnavailable(
            _("Le stockage des fichiers ne répond pas pour le moment : réessayez dans quelques minutes.")
        ) from error
    try:
        try:
            key = open_data_key(version.data_key, context_of(version, file))
        except (KeyShredded, KeyUnavailable) as error:
            raise ContentUnavailable(_("La clé de ce contenu est indisponible ou a été détruite.")) from error
        try:
            if plaintext_length(raw.seek(0, os.SEEK_END)) != version.size:
                raise IntegrityError("stored size does not match the recorded size")
            context = context_of(version, file)
            file_id = int(context["file"]) if "file" in context else None
            aad = associated_data(file.organization_id, version.uid, file_id)
            chunks = decrypt_stream(raw, key, aad, start, end)
            first = next(chunks, b"")
        except CryptoError as error:
            raise IntegrityFailure(integrity_message(), file_id=file.id, version_number=version.number) from error
    except BaseException:
        raw.close()
        raise
    if record_access and (not preview or start == 0):
        record_download(actor, file.id, file.name, version.number, preview=preview)

    # Captured now: a streamed response is read after its request (and app) context is gone.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    failure = IntegrityFailure(integrity_message(), file_id=file.id, version_number=version.number, mid_stream=True)
    ahead = (version.size if end is None else end) - start > DECRYPT_AHEAD_BYTES

    def stream() -> Iterator[bytes]:
        try:
            if first:
                yield first
            if ahead:
                yield from decrypt_ahead(chunks)
            else:
                yield from chunks
        except CryptoError as error:
            failure.__cause__ = error
            journal_integrity_failure(actor, failure, app=app)
            # Raised to the reader: a restore maps it to 409; under a streamed response the
            # WSGI server aborts the connection, so the client sees a body shorter than announced.
            raise failure from error
        finally:
            chunks.close()
            raw.close()

    return version, stream()


def associated_data(organization_id: int, version_uid: str, file_id: int | None = None) -> bytes:
    from portal.crypto.streaming import associated_data as crypto_aad

    return crypto_aad(organization_id, version_uid, file_id)


def record_download(actor: Actor, file_id: int, file_name: str, version_number: int, *, preview: bool) -> None:
    """Journal a download, or a preview as a consultation (callers that use ``record_access=False``)."""
    if preview:
        record_view(actor, file_id, file_name, version_number)
        return
    record(
        "file.downloaded",
        actor,
        target_type="file",
        target_id=file_id,
        target_label=file_name,
        details={"version": version_number},
    )


def record_view(actor: Actor, file_id: int, file_name: str, version_number: int) -> bool:
    """Journal ``file.viewed`` unless this member's last one for this file is under a minute old.

    An image or PDF viewer asks for a preview several times (reloads, ranges, a tab put
    back): one consultation, not a list of them. The decision is one upsert on the
    (member, file) row that moves ``viewed_at`` only when the previous consultation is
    older than the window, and returns a row only then: of two concurrent previews, the
    second waits on the first's row (the unique key) and then sees it fresh, so exactly
    one of them journals. Returns whether an entry was recorded.
    """
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from portal.audit.models import RecentView
    from portal.database import utcnow

    if actor.user_id is not None and actor.organization_id is not None:
        now = utcnow()
        dialect_insert = postgresql_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
        statement = dialect_insert(RecentView).values(
            organization_id=actor.organization_id, user_id=actor.user_id, file_id=file_id, viewed_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=["user_id", "file_id"],
            set_={"viewed_at": now},
            where=RecentView.viewed_at <= now - timedelta(seconds=VIEW_WINDOW_SECONDS),
        ).returning(RecentView.id)
        if db.session.execute(statement).first() is None:
            return False
    record(
        "file.viewed",
        actor,
        target_type="file",
        target_id=file_id,
        target_label=file_name,
        details={"version": version_number},
    )
    return True


def integrity_message() -> str:
    return _("Le contenu stocké n'a pas passé le contrôle d'intégrité : il n'est pas servi.")


def journal_integrity_failure(actor: Actor, failure: IntegrityFailure, *, app: Flask | None = None) -> None:
    """Journal ``file.integrity_failed`` for ``failure``, once, in a transaction of its own.

    The one place where a failed read becomes a journal entry, for every reader: web
    download and preview, API download, restore, backups. Its own transaction, because the
    reader's is over (a response already streaming) or doomed (the action failed and rolls
    back); a fresh app context gives it its own session. The caller must not hold a write
    transaction (roll back first): SQLite's write lock or a locked journal head would make
    this one wait. Never raises: failing to journal is logged, and the reader still refuses.
    """
    if failure.journalled:
        return
    cause = failure.__cause__
    detail = str(cause or failure.message)
    logger.error(
        "integrity check failed%s for file %s version %s: %s",
        " mid-stream" if failure.mid_stream else "",
        failure.file_id,
        failure.version_number,
        detail,
    )
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with app.app_context(), write_transaction():
            file = db.session.get(File, failure.file_id) if failure.file_id is not None else None
            record(
                "file.integrity_failed",
                actor,
                target_type="file",
                target_id=failure.file_id,
                target_label=file.name if file is not None else None,
                details={
                    "version": failure.version_number,
                    "detail": (f"mid-stream: {detail}" if failure.mid_stream else detail)[:200],
                },
            )
            db.session.commit()
    except Exception:
        logger.exception("could not journal the integrity failure of file %s", failure.file_id)
        return
    failure.journalled = True
