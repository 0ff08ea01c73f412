"""Scheduled jobs of the documents feature."""

from __future__ import annotations

from flask import current_app

from portal.database import utcnow
from portal.documents.services import trash
from portal.extensions import db
from portal.scheduler import scheduled_job
from portal.storage.blobs import delete_blobs


def purge_trash_now() -> int:
    """Purge files past the trash retention; commits, then deletes their blobs. Returns blobs removed."""
    keys = trash.purge_expired_trash(utcnow(), current_app.config["COFFRE_TRASH_RETENTION_DAYS"])
    db.session.commit()
    # Only after the commit: until then the blobs must stay readable in case of rollback.
    delete_blobs(keys)
    return len(keys)


@scheduled_job("interval", hours=1)
def purge_expired_trash_job() -> None:
    purge_trash_now()


def expire_uploads_now() -> int:
    """Remove resumable uploads past their 24 hours (and their partial blobs); commits."""
    from portal.documents.services import resumable

    removed = resumable.expire()
    db.session.commit()
    return removed


@scheduled_job("interval", hours=1)
def expire_resumable_uploads_job() -> None:
    expire_uploads_now()


def abort_abandoned_uploads_now() -> int:
    """Abort the multipart uploads whose abort could not reach the bucket; commits."""
    from portal.storage import abandoned
    from portal.storage.blobs import configured_stores

    aborted = 0
    for store in configured_stores():
        if store.name == "s3":
            aborted += abandoned.sweep(store)[0]
    db.session.commit()
    return aborted


# Parts left by a failed abort are billed until aborted: sooner than the daily check.
@scheduled_job("interval", minutes=15)
def abort_abandoned_uploads_job() -> None:
    abort_abandoned_uploads_now()
