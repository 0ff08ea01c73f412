"""Storage consistency: blobs on disk against version rows."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from portal.documents.models import File, FileVersion
from portal.extensions import db

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


@dataclass
class StorageReport:
    orphan_blobs: list[str] = field(default_factory=list)
    recent_blobs_skipped: list[str] = field(default_factory=list)
    missing_blobs: list[tuple[int, int, int]] = field(default_factory=list)  # (file id, version number, version id)
    temp_swept: int = 0
    abandoned_aborted: int = 0  # multipart uploads whose abort had failed, aborted now
    abandoned_waiting: int = 0  # the same, the store still unreachable


def check_storage(fix: bool = False, grace_seconds: int = 3600) -> StorageReport:
    """Compare the blobs of every configured store (the local directory, the bucket) with the
    version rows that point at each; with ``fix`` delete orphans and flag missing blobs.

    A blob is an orphan in a store when no row points at that store for its key: the local
    copy a ``storage migrate`` killed before its cleanup left is one.
    """
    from portal.storage.blobs import configured_stores

    report = StorageReport()
    rows = db.session.execute(
        select(
            FileVersion.storage_key,
            FileVersion.storage_backend,
            FileVersion.file_id,
            FileVersion.number,
            FileVersion.id,
        ).where(FileVersion.storage_key.is_not(None))
    ).all()
    now = time.time()
    for store in configured_stores():
        known = {
            key: (file_id, number, version_id)
            for key, backend, file_id, number, version_id in rows
            if (backend or "local") == store.name
        }
        stored = set(store.iter_keys())
        for key in sorted(stored - known.keys()):
            # A blob written moments ago may still be waiting for its row's commit.
            try:
                age = now - store.modified_at(key)
            except FileNotFoundError:
                continue
            if age < grace_seconds:
                report.recent_blobs_skipped.append(key)
                continue
            report.orphan_blobs.append(key)
            if fix:
                store.delete(key)
        for key in sorted(known.keys() - stored):
            file_id, number, version_id = known[key]
            report.missing_blobs.append((file_id, number, version_id))
            if fix:
                db.session.execute(update(FileVersion).where(FileVersion.id == version_id).values(blob_missing=True))
                db.session.execute(update(File).where(File.id == file_id).values(unavailable=True))
        if fix:
            if store.name == "s3":
                from portal.storage import abandoned

                report.abandoned_aborted, report.abandoned_waiting = abandoned.sweep(store)
            report.temp_swept += store.sweep_temp(grace_seconds)
    if fix:
        db.session.flush()
    return report
