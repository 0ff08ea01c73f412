"""The backup repository on disk: content-addressed objects, wrapped keys, signed manifests.

Layout under COFFRE_BACKUP_DIR::

    packs/<name>.pack, .idx     objects (blobs' ciphertext, manifest parts) named by their
                                sha256, many to a pack, with the index of where each lies
                                (``packs``: format 3)
    objects/ab/cd/<sha256>      one object a file (format 1 and 2 backups; still read)
    keys/<org>/<key uid>.json   a data key, still wrapped by the master key
    manifests/<org>/<id>.json   the signed manifest of one backup
    tmp/                        partial writes (a killed backup leaves only these)

Objects are copied as they are (ciphertext: the repository never sees a plaintext).
Wrapped keys live outside the manifests on purpose: a manifest is immutable and signed,
a key file is deleted when the portal shreds that key, so a purge reaches every backup.
Every file is written to tmp/, fsynced and renamed: a manifest exists only whole.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import mmap
import os
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from flask import current_app

from portal.backups.packs import PackBatch, PackIndex
from portal.storage.blobs import _fsync_dir, _make_dirs_durable

HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
UID_PATTERN = re.compile(r"[0-9a-f]{32}")
COPY_CHUNK = 1024 * 1024


# Past this many new files, one syncfs(2) of the repository's filesystem beats an fsync of
# each file and directory (measured: bench/backups_bench.py, docs/performance.md).
SYNCFS_THRESHOLD = 64


def _syncfs(path: Path) -> bool:
    """syncfs(2) on ``path``'s filesystem; False where it is not available (then fsync each)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


class BackupDirError(ValueError):
    """The configured backup directory cannot be used."""


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or not signed by this instance."""


def canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Repository:
    identity: tuple[Any, ...] = ()

    def __init__(self, root: Path | str) -> None:
        self._local = threading.local()
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        for directory in (self.root, self.tmp, self.root / "objects", self.root / "keys", self.root / "manifests"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.packs = PackIndex(self.root, self.tmp)

    # ------------------------------------------------------------------ paths

    def object_path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not HASH_PATTERN.fullmatch(digest):
            raise ValueError("invalid object name")
        return self.root / "objects" / digest[:2] / digest[2:4] / digest

    def key_path(self, organization_id: int, uid: str) -> Path:
        if not isinstance(uid, str) or not UID_PATTERN.fullmatch(uid):
            raise ValueError("invalid key uid")
        return self.root / "keys" / str(int(organization_id)) / f"{uid}.json"

    def manifest_path(self, organization_id: int, backup_id: int) -> Path:
        return self.root / "manifests" / str(int(organization_id)) / f"{int(backup_id)}.json"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def _atomic(self, final: Path) -> Iterator[BinaryIO]:
        temp = self.tmp / f"{secrets.token_hex(16)}.part"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        handle = os.fdopen(fd, "wb")
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            _make_dirs_durable(final.parent, self.root)
            os.rename(temp, final)
            _fsync_dir(final.parent)
        except BaseException:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def batch(self) -> PackBatch:
        """What one backup writes its new objects into (``put_object(pending=...)``)."""
        return PackBatch(self.packs)

    def running(self) -> contextlib.AbstractContextManager[None]:
        """Held (shared) while a backup runs: garbage collection does not run meanwhile."""
        return self.packs.shared()

    def exclusive(self) -> contextlib.AbstractContextManager[bool]:
        """True when no backup runs (and none starts until it is left): garbage collection."""
        return self.packs.flock(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def put_object(
        self, source: BinaryIO, *, sync: bool = True, pending: PackBatch | None = None, digest: str | None = None
    ) -> tuple[str, int, int]:
        """Store ``source`` in a pack of ``pending``; returns (sha256, size, bytes written: 0
        when already stored). A real file is hashed through mmap (unless the caller just
        did) and copied by the kernel, only when the repository lacks it.

        Nothing is fsynced until ``make_durable(pending)``, once before the manifest.
        Without ``pending`` the object gets a pack of its own, durable when ``sync``."""
        if pending is None:
            batch = self.batch()
            try:
                result = self.put_object(source, pending=batch, digest=digest)
                if sync:
                    self.make_durable(batch)
                else:
                    batch.seal_all()
            finally:
                batch.abandon()
            return result
        try:
            fileno = source.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fileno = None
        if fileno is None:
            return self._put_stream(source, pending)
        if digest is None:
            digest, size = self.hash_file(fileno)
        else:
            size = os.fstat(fileno).st_size
        if self.has_object(digest) or not pending.reserve(digest):
            return digest, size, 0
        writer = pending.writer()
        writer.append_file(fileno, size, digest)
        pending.release(writer)
        return digest, size, size

    def _put_stream(self, source: BinaryIO, batch: PackBatch) -> tuple[str, int, int]:
        """A stream (a manifest part, a blob in a bucket): appended while hashed, taken back
        when it turns out to be stored already."""
        writer = batch.writer()
        h = hashlib.sha256()
        size = 0
        while chunk := source.read(COPY_CHUNK):
            h.update(chunk)
            writer.append_bytes(chunk)
            size += len(chunk)
        name = h.hexdigest()
        if self.has_object(name) or not batch.reserve(name):
            writer.rewind()
            batch.release(writer)
            return name, size, 0
        writer.commit(name)
        batch.release(writer)
        return name, size, size

    local = True  # objects are files under root (the S3 repository says False)

    @staticmethod
    def hash_file(source: int) -> tuple[str, int]:
        """(sha256, size) of an open file, hashed through mmap (no copy into Python)."""
        size = os.fstat(source).st_size
        if not size:
            return hashlib.sha256(b"").hexdigest(), 0
        with mmap.mmap(source, 0, access=mmap.ACCESS_READ) as view:
            return hashlib.sha256(view).hexdigest(), size  # releases the GIL: copies run alongside

    @property
    def _unsynced(self) -> list[Path]:
        # Per thread: two backups running at once each make their own files durable.
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        return self._local.pending

    def make_durable(self, batch: PackBatch | None = None) -> None:
        """Seal ``batch``'s packs, then fsync every file written unsynced (its packs' indexes,
        this thread's keys) and their directories up to the root."""
        pending = [*self._unsynced, *(batch.seal_all() if batch is not None else ())]
        self._unsynced.clear()
        if batch is not None:
            batch.sealed = []
        if len(pending) > SYNCFS_THRESHOLD and _syncfs(self.root):
            return
        directories: set[Path] = set()
        for path in pending:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            parent = path.parent
            while parent != self.root and parent not in directories:
                directories.add(parent)
                parent = parent.parent
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            _fsync_dir(directory)

    def has_object(self, digest: str) -> bool:
        """True when stored. A file of its own gets its mtime refreshed, which keeps garbage
        collection off an object a backup still being written reuses (its manifest does not
        exist yet); a packed one needs nothing: collection waits for running backups."""
        return self.touch(self.object_path(digest)) or self.packs.locate(digest) is not None

    def object_exists(self, digest: str) -> bool:
        """True when stored (without refreshing its mtime, unlike ``has_object``)."""
        if self.object_path(digest).is_file():
            return True
        location = self.packs.locate(digest, force=True)
        try:
            return location is not None and location[0].stat().st_size >= location[1] + location[2]
        except FileNotFoundError:
            return False  # an index naming a pack that is gone

    def locate(self, digest: str) -> tuple[Path, int, int] | None:
        """(file, offset, length) of a stored object: its own file, or its pack."""
        path = self.object_path(digest)
        with contextlib.suppress(FileNotFoundError):
            return path, 0, path.stat().st_size
        return self.packs.locate(digest, force=True)

    @staticmethod
    def touch(path: Path) -> bool:
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def put_key(self, organization_id: int, uid: str, record: dict[str, Any], *, sync: bool = True) -> int:
        """Store a wrapped key once; returns the bytes written (0 when already there)."""
        path = self.key_path(organization_id, uid)
        if self.touch(path):
            return 0
        payload = canonical(record)
        if sync:
            with self._atomic(path) as handle:
                handle.write(payload)
            return len(payload)
        temp = self.tmp / f"{secrets.token_hex(16)}.part"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.rename(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        self._unsynced.append(path)
        return len(payload)

    def read_key(self, organization_id: int, uid: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.key_path(organization_id, uid).read_bytes())
        except FileNotFoundError:
            return None

    def delete_key(self, organization_id: int, uid: str) -> bool:
        path = self.key_path(organization_id, uid)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def write_manifest(self, organization_id: int, backup_id: int, body: dict[str, Any]) -> tuple[str, int]:
        """Sign ``body`` with the instance's Ed25519 key and write it; returns (relative path, bytes)."""
        from portal.audit.checkpoints import key_id_of, signing_key

        key = signing_key()
        signed = canonical(body)
        envelope = {
            "body": body,
            "key_id": key_id_of(key.public_key()),
            "signature": base64.b64encode(key.sign(signed)).decode(),
        }
        payload = canonical(envelope)
        return self._store_manifest(organization_id, backup_id, payload), len(payload)

    def _store_manifest(self, organization_id: int, backup_id: int, payload: bytes) -> str:
        path = self.manifest_path(organization_id, backup_id)
        with self._atomic(path) as handle:
            handle.write(payload)
        return self.relative(path)

    def read_manifest(self, relative_path: str) -> dict[str, Any]:
        """The manifest's body, once its signature is checked against this instance's key."""
        from portal.audit.checkpoints import key_id_of, signing_key

        try:
            envelope = json.loads(self._manifest_bytes(relative_path))
            body = envelope["body"]
            signature = base64.b64decode(envelope["signature"])
        except FileNotFoundError:
            raise ManifestError(f"manifest {relative_path} is missing") from None
        except (ValueError, KeyError, TypeError):
            raise ManifestError(f"manifest {relative_path} is unreadable") from None
        public = signing_key().public_key()
        if envelope.get("key_id") != key_id_of(public):
            raise ManifestError(f"manifest {relative_path} is signed by another key")
        try:
            public.verify(signature, canonical(body))
        except InvalidSignature:
            raise ManifestError(f"manifest {relative_path} has a bad signature") from None
        return body

    def open_object(self, digest: str) -> BinaryIO:
        """A seekable reader of a stored object, read by range from its pack (raises
        FileNotFoundError)."""
        with contextlib.suppress(FileNotFoundError):
            return self.object_path(digest).open("rb")
        packed = self.packs.open(digest)
        if packed is None:
            raise FileNotFoundError(digest)
        return io.BufferedReader(packed, COPY_CHUNK)  # type: ignore[return-value]

    def delete_manifest(self, relative_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / relative_path).unlink()

    def iter_manifests(self) -> Iterator[str]:
        for path in sorted((self.root / "manifests").rglob("*.json")):
            yield self.relative(path)

    def collect_packs(self, referenced: set[str], cutoff: float) -> dict[str, int]:
        """Delete or repack the packs holding only or mostly unreferenced objects (``packs``);
        call it inside ``exclusive``."""
        return self.packs.collect(referenced, cutoff)

    def iter_objects(self) -> Iterator[tuple[str, float]]:
        """(name, mtime) of every object stored as a file of its own (formats 1 and 2)."""
        for path in (self.root / "objects").rglob("*"):
            if path.is_file() and HASH_PATTERN.fullmatch(path.name):
                with contextlib.suppress(FileNotFoundError):
                    yield path.name, path.stat().st_mtime

    def delete_object(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.object_path(digest).unlink()

    def iter_keys(self) -> Iterator[tuple[str, str, float]]:
        """(organisation, uid, mtime) of every stored wrapped key."""
        for path in (self.root / "keys").rglob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                yield path.parent.name, path.stem, path.stat().st_mtime

    def sweep_temp(self, older_than_seconds: int = 6 * 3600) -> int:
        """Remove partial writes of killed backups (recent ones may belong to a running backup)."""
        import time

        removed = 0
        for entry in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.stat().st_mtime >= older_than_seconds:
                    entry.unlink()
                    removed += 1
        return removed

    def _manifest_bytes(self, relative_path: str) -> bytes:
        path = (self.root / relative_path).resolve()
        if self.root.resolve() not in path.parents:
            raise ManifestError("the manifest path leaves the backup directory")
        return path.read_bytes()

    def hash_object(self, digest: str) -> str | None:
        """The actual sha256 of a stored object, None when it is missing."""
        try:
            handle = self.open_object(digest)
        except FileNotFoundError:
            return None
        with handle:
            h = hashlib.sha256()
            while chunk := handle.read(COPY_CHUNK):
                h.update(chunk)
        return h.hexdigest()


def get_repository() -> Repository:
    """The repository: the bucket COFFRE_BACKUP_S3_BUCKET when set, else COFFRE_BACKUP_DIR
    (created when missing; with S3 it only stages partial writes), never inside blob storage."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    root = Path(app.config["COFFRE_BACKUP_DIR"]).resolve()
    storage = Path(app.config["COFFRE_STORAGE_DIR"]).resolve()
    if root == storage or storage in root.parents:
        raise BackupDirError(f"COFFRE_BACKUP_DIR ({root}) must not be inside COFFRE_STORAGE_DIR ({storage})")
    bucket = app.config.get("COFFRE_BACKUP_S3_BUCKET")
    identity = (root, bucket, app.config.get("COFFRE_BACKUP_S3_ENDPOINT_URL"))
    repository = app.extensions.get("coffre_backup_repository")
    if repository is None or getattr(repository, "identity", None) != identity:
        if bucket:
            from portal.backups.s3 import S3Repository

            repository = S3Repository(root, bucket, identity[2])
        else:
            repository = Repository(root)
        repository.identity = identity
        app.extensions["coffre_backup_repository"] = repository
    return repository
