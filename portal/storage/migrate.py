"""Moving blobs between stores (``flask --app wsgi storage migrate --to s3``).

One blob at a time: copy it under the same key into the target, read the copy back and
compare size and ciphertext sha256 with the source, then switch the version row's
``storage_backend`` (the caller commits), and only after that commit delete the source
copy. A kill at any point leaves every row pointing at a store that holds its blob; a
rerun picks up the rows not yet switched (an unfinished multipart upload of the key is
aborted, a complete copy is verified and kept, a source copy left after the switch is an
orphan check-storage removes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, select, update

from portal.documents.models import FileVersion
from portal.extensions import db
from portal.storage.base import BlobStoreProtocol

COPY_CHUNK = 8 * 1024 * 1024


class CopyMismatchError(Exception):
    """The copy read back differs from the source (size or ciphertext hash): not switched."""


@dataclass(frozen=True)
class Pending:
    version_id: int
    key: str
    source: str


def pending_versions(target: str, batch: int = 200) -> Iterator[Pending]:
    """Rows whose blob is not yet in ``target``, smallest id first (a rerun resumes there)."""
    last = 0
    while True:
        rows = db.session.execute(
            select(FileVersion.id, FileVersion.storage_key, func.coalesce(FileVersion.storage_backend, "local"))
            .where(
                FileVersion.storage_key.is_not(None),
                FileVersion.blob_missing.is_(False),
                func.coalesce(FileVersion.storage_backend, "local") != target,
                FileVersion.id > last,
            )
            .order_by(FileVersion.id)
            .limit(batch)
        ).all()
        db.session.rollback()  # no transaction stays open while blobs are copied
        if not rows:
            return
        for version_id, key, source in rows:
            yield Pending(version_id, key, source)
        last = rows[-1][0]


def _digest(handle) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(COPY_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def copy_verified(source: BlobStoreProtocol, target: BlobStoreProtocol, key: str) -> int:
    """Copy one blob under the same key and verify the copy; returns its size.

    A run killed mid-way may have left, for this key, an unfinished multipart upload
    (aborted here, or it would stay in the bucket) or a complete copy whose row was not
    switched yet (kept when it matches the source, so a versioned bucket does not keep two
    versions of the blob; removed with all its versions when it does not).
    """
    target.abort_unfinished(key)
    if target.exists(key):
        with source.open(key) as raw:
            expected = _digest(raw)
        with target.open(key) as copy:
            if _digest(copy) == expected and target.size(key) == expected[0]:
                return expected[0]
        target.delete(key)
    digest = hashlib.sha256()
    size = 0
    with source.open(key) as raw, target.create(key) as pending:
        while chunk := raw.read(COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            pending.file.write(chunk)
    with target.open(key) as copy:
        copied_size, copied_digest = _digest(copy)
    if copied_size != size or copied_digest != digest.hexdigest() or target.size(key) != size:
        target.delete(key)
        raise CopyMismatchError(f"copy of blob {key} does not match its source")
    return size


def referenced_in(key: str, backend: str) -> bool:
    """Whether a row points at ``key`` in ``backend`` (another run may have switched it)."""
    found = db.session.scalar(
        select(FileVersion.id).where(
            FileVersion.storage_key == key, func.coalesce(FileVersion.storage_backend, "local") == backend
        )
    )
    db.session.rollback()
    return found is not None


def switch_pointer(item: Pending, target: str) -> bool:
    """Point the row at ``target`` (flushed; the caller commits). False when the row changed
    meanwhile (purged, or switched by another run): the caller then drops the copy."""
    result = db.session.execute(
        update(FileVersion)
        .where(
            FileVersion.id == item.version_id,
            FileVersion.storage_key == item.key,
            func.coalesce(FileVersion.storage_backend, "local") == item.source,
        )
        .values(storage_backend=target)
    )
    return result.rowcount == 1
