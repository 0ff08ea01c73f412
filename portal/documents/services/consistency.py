"""Storage consistency: blobs on disk against version rows."""

from __future__ import annotations

import logging
import os
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
