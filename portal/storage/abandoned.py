"""Multipart uploads an abort could not reach, kept in a durable list until aborted.

When the store drops mid-upload, the writer's abort fails too: the parts already sent
stay in the bucket. The upload id is then written to ``envois_s3_abandonnes`` on a
connection of its own (the request's transaction is being rolled back, and none is open
while a body streams), and ``sweep`` aborts every listed upload once the store answers:
``documents check-storage --fix`` and the quarter-hourly job call it. The listing sweep
(``S3BlobStore.sweep_temp``) remains the fallback when even the database was out of reach.
"""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import delete, insert, select, update

from portal.extensions import db
from portal.storage.models import AbandonedUpload

logger = logging.getLogger(__name__)

GONE_CODES = frozenset({"404", "NoSuchUpload"})


def recorder(app: Flask):  # type: ignore[no-untyped-def]
    """The callback an S3 store calls with (bucket, object key, upload id) when an abort fails."""

    def record(bucket: str, object_key: str, upload_id: str) -> None:
        try:
            with app.app_context(), db.engine.begin() as connection:
                connection.execute(
                    insert(AbandonedUpload).values(
                        bucket=bucket, object_key=object_key, upload_id=upload_id, attempts=0
                    )
                )
        except Exception:
            logger.exception("could not record abandoned upload %s; the listing sweep will find it", upload_id)

    return record


def sweep(store) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Abort the listed uploads of ``store``'s bucket; returns (aborted, still listed).
    Stops at the first failure to reach the store (the rest waits for the next sweep).
    Flushes the removed rows; the caller commits."""
    from botocore.exceptions import BotoCoreError, ClientError

    rows = db.session.execute(
        select(AbandonedUpload.id, AbandonedUpload.object_key, AbandonedUpload.upload_id)
        .where(AbandonedUpload.bucket == store.bucket)
        .order_by(AbandonedUpload.id)
    ).all()
    aborted = 0
    for position, (row_id, object_key, upload_id) in enumerate(rows):
        try:
            store.client.abort_multipart_upload(Bucket=store.bucket, Key=object_key, UploadId=upload_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in GONE_CODES:
                _count_attempt(row_id)
                logger.warning("abort of upload %s refused: %s", upload_id, error)
                continue
        except BotoCoreError as error:
            _count_attempt(row_id)
            logger.warning("object store still unreachable (%s); %d upload(s) wait", error, len(rows) - position)
            return aborted, len(rows) - position
        db.session.execute(delete(AbandonedUpload).where(AbandonedUpload.id == row_id))
        aborted += 1
    return aborted, len(rows) - aborted


def _count_attempt(row_id: int) -> None:
    db.session.execute(
        update(AbandonedUpload).where(AbandonedUpload.id == row_id).values(attempts=AbandonedUpload.attempts + 1)
    )
    db.session.flush()
