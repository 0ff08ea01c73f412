"""Blobs on the local filesystem.

A blob is named by a random 128-bit hex key and stored at ``root/ab/cd/<key>``: no user file
name ever reaches the filesystem, and keys are validated before any path is built from them.
``create`` writes into ``root/tmp`` (0600), fsyncs, then renames into place and fsyncs the
directory, so a blob is either whole or absent; the caller commits its database row only
after ``create`` returns, and the orphan check cleans the crash windows in between.
The root is 0700 and lives outside static/: blobs are only ever served through the app.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from portal.storage.base import (
    BACKENDS,
    KEY_PATTERN,
    BlobStoreProtocol,
    InvalidBlobKeyError,
    PendingBlob,
    StorageFullError,
    StorageUnavailableError,
    check_key,
)

logger = logging.getLogger(__name__)

__all__ = [
    "KEY_PATTERN",
    "BlobStore",
    "InvalidBlobKeyError",
    "PendingBlob",
    "StorageFullError",
    "StorageUnavailableError",
    "delete_blobs",
    "get_blob_store",
]

TEMP_DIR = "tmp"
TEMP_SUFFIX = ".part"
# Partial blobs of resumable uploads: kept across requests (and days), so not in TEMP_DIR,
# whose files sweep_temp removes after an hour; the upload expiry job removes them.
RESUMABLE_DIR = "resumable"


# Out of space, over a disk quota, or past the file size limit (RLIMIT_FSIZE, filesystem max).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, stop: Path) -> list[Path]:
    """Create ``path`` (and missing parents up to ``stop``); return the directories whose
    entries changed, innermost first, for the caller to fsync once its own entry is in.

    A directory entry is only durable once its parent directory is fsynced: without it a
    power cut could lose root/ab (and the blob renamed inside it) after the row committed.
    The fsyncs wait until the blob's rename so that they are issued together: on a
    journalling file system the first one commits every entry made so far and the others
    find nothing left to write (one journal commit per new blob instead of one per level).
    """
    missing: list[Path] = []
    current = path
    while current != stop and not current.is_dir():
        missing.append(current)
        current = current.parent
    changed: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another writer made it, and fsyncs its parent
        changed.insert(0, directory.parent)
    return changed


def _fsync_dirs(directories: Iterable[Path]) -> None:
    for directory in directories:
        _fsync_dir(directory)


def _make_dirs_durable(path: Path, stop: Path) -> None:
    """Create ``path`` (and missing parents up to ``stop``), durably."""
    _fsync_dirs(_make_dirs(path, stop))


class BlobStore:
    name = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.temp = self.root / TEMP_DIR
        for directory in (self.root, self.temp):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode is masked by the umask and ignored for existing directories.
            os.chmod(directory, 0o700)

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    @contextlib.contextmanager
    def create(self, key: str | None = None) -> Iterator[PendingBlob]:
        """Write a new blob through ``pending.file``; ``pending.key`` is set once it is durable.

        A full disk (or a file size limit) raises ``StorageFullError`` with the temporary file
        already removed.
        """
        # An explicit key only when a blob moves between stores (storage migrate).
        key = secrets.token_hex(16) if key is None else check_key(key)
        temp_path = self.temp / f"{secrets.token_hex(16)}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            if error.errno in FULL_ERRNOS:
                raise StorageFullError(error.errno, "blob storage is full") from error
            raise
        handle = os.fdopen(fd, "wb", buffering=0)
        pending = PendingBlob(file=handle, _temp_path=temp_path)
        try:
            yield pending
            # The content is durable before it gets its name: a blob is whole or absent.
            os.fsync(handle.fileno())
            handle.close()
            final = self._path(key)
            created = _make_dirs(final.parent, self.root)
            os.rename(temp_path, final)
            # The blob's directory, then the parents of any directory made for it. The
            # temporary directory is not fsynced: that would only make the removal of the
            # ``.part`` name durable. Lost in a crash, that name comes back as a second link
            # to the blob's inode (or as the file itself, the rename undone, and the row never
            # committed since create had not returned); sweep_temp unlinks it an hour later,
            # which leaves the blob's own name, and so the blob, intact.
            _fsync_dirs([final.parent, *created])
        except BaseException as error:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                temp_path.unlink()
            if isinstance(error, OSError) and not isinstance(error, StorageFullError) and error.errno in FULL_ERRNOS:
                raise StorageFullError(error.errno, "blob storage is full") from error
            raise
        pending.key = key

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    # ------------------------------------------------------------ resumable uploads

    def _resumable_path(self, key: str) -> Path:
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            raise InvalidBlobKeyError("invalid blob key")
        return self.root / RESUMABLE_DIR / f"{key}{TEMP_SUFFIX}"

    def create_resumable(self, key: str) -> BinaryIO:
        """A new, empty partial blob (0600), opened read-write and unbuffered."""
        path = self._resumable_path(key)
        _make_dirs_durable(path.parent, self.root)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            if error.errno in FULL_ERRNOS:
                raise StorageFullError(error.errno, "blob storage is full") from error
            raise
        _fsync_dir(path.parent)
        return os.fdopen(fd, "r+b", buffering=0)

    def open_resumable(self, key: str) -> BinaryIO:
        """The partial blob, read-write (FileNotFoundError once removed or promoted)."""
        return open(self._resumable_path(key), "r+b", buffering=0)

    def resumable_size(self, key: str) -> int | None:
        try:
            return self._resumable_path(key).stat().st_size
        except FileNotFoundError:
            return None

    def promote_resumable(self, key: str) -> str:
        """Move a complete (fsynced) partial blob into place under the same key, durably."""
        source = self._resumable_path(key)
        final = self._path(key)
        _make_dirs_durable(final.parent, self.root)
        os.rename(source, final)
        _fsync_dir(final.parent)
        _fsync_dir(source.parent)
        return key

    def delete_resumable(self, key: str) -> None:
        path = self._resumable_path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def iter_resumable(self) -> Iterator[tuple[str, float]]:
        """(key, mtime) of every partial blob."""
        directory = self.root / RESUMABLE_DIR
        if not directory.is_dir():
            return
        for entry in directory.iterdir():
            key = entry.name.removesuffix(TEMP_SUFFIX)
            if KEY_PATTERN.fullmatch(key) and entry.name.endswith(TEMP_SUFFIX):
                try:
                    yield key, entry.stat().st_mtime
                except FileNotFoundError:
                    continue

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def modified_at(self, key: str) -> float:
        return self._path(key).stat().st_mtime

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK) or not self.temp.is_dir():
            raise StorageUnavailableError(errno.EACCES, "blob directory is not writable")

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def iter_keys(self) -> Iterator[str]:
        """Every stored blob key (temporary files excluded)."""
        for first in sorted(self.root.iterdir()):
            if not (first.is_dir() and re.fullmatch(r"[0-9a-f]{2}", first.name)):
                continue
            for second in sorted(first.iterdir()):
                if not (second.is_dir() and re.fullmatch(r"[0-9a-f]{2}", second.name)):
                    continue
                for entry in sorted(second.iterdir()):
                    name = entry.name
                    if KEY_PATTERN.fullmatch(name) and name[:2] == first.name and name[2:4] == second.name:
                        yield name

    def abort_unfinished(self, key: str) -> int:
        # Temp files are named at random, not by key: sweep_temp removes them.
        check_key(key)
        return 0

    def sweep_temp(self, older_than_seconds: int = 3600, now: float | None = None) -> int:
        """Delete temporary files left by crashed writes; recent ones may be writes in progress."""
        now = time.time() if now is None else now
        removed = 0
        for entry in self.temp.iterdir():
            try:
                if entry.is_file() and now - entry.stat().st_mtime >= older_than_seconds:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            _fsync_dir(self.temp)
        return removed


def get_blob_store(backend: str | None = None) -> BlobStoreProtocol:
    """The blob store named ``backend`` ("local", "s3"), or the one new blobs go to
    (COFFRE_STORAGE). A version row's ``storage_backend`` names where its blob is (NULL: local)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    backend = backend or app.config.get("COFFRE_STORAGE") or "local"
    if backend not in BACKENDS:
        raise ValueError(f"unknown blob store {backend!r} (COFFRE_STORAGE is local or s3)")
    if backend == "s3":
        from portal.storage.s3 import get_s3_store

        return get_s3_store(app)
    root = Path(app.config["COFFRE_STORAGE_DIR"])
    store = app.extensions.get("coffre_blob_store")
    if store is None or store.root != root:
        store = BlobStore(root)
        app.extensions["coffre_blob_store"] = store
    return store


def configured_stores() -> list[BlobStoreProtocol]:
    """Every store a blob may be in: the local directory, and the bucket when one is configured."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stores = [get_blob_store("local")]
    if app.config.get("COFFRE_STORAGE") == "s3" or app.config.get("COFFRE_S3_BUCKET"):
        stores.append(get_blob_store("s3"))
    return stores


def delete_blobs(keys: Iterable[str | None]) -> None:
    """Remove blobs (after a purge commit, or after a failed upload transaction).

    Keys are random 128-bit names, unique across stores, so each key is removed from every
    configured store: a blob left in the local directory by an interrupted
    ``storage migrate`` goes with its copy in the bucket.
    """
    keys = [key for key in keys if key]
    if not keys:
        return
    for store in configured_stores():
        for key in keys:
            try:
                store.delete(key)
            except OSError:
                logger.exception("could not delete blob %s from %s; check-storage will report it", key, store.name)
