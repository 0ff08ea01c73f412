"""Pack files: many backup objects in one file (restic's and borg's design), manifest format 3.

A first backup used to create one file per object, and ext4 makes each creation wait for
its journal while the blobs' data is written back (docs/performance.md "Backups"): that,
not copying, kept it at half the speed of ``tar``. Objects are now appended to packs:

    packs/<name>.pack   objects back to back, each still named by its ciphertext's sha256
    packs/<name>.idx    JSON ``[[sha256, offset, length], ...]``: where each object lies

A pack is written in tmp/, fsynced, renamed into packs/, and only then its index written:
an index never names bytes that are not on disk, and a pack without an index (a killed
run) is garbage that ``collect`` removes. The manifests keep naming objects by hash only,
never by location, so repacking (garbage collection) moves objects without touching a
signed manifest; the repository's index (every ``.idx``) says where each object is now.

Garbage collection (``collect``) runs under the repository's exclusive lock, which every
backup holds shared while it runs: a backup that reuses an object of an old pack can
never see that pack repacked under it. A pack none of whose objects a manifest names is
deleted; a pack more than half garbage (in bytes) is repacked: its live objects are copied
into a new pack, made durable with its index, then the old index and pack are deleted. A
pack less than half garbage is kept as it is until it crosses that line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

PACK_TARGET = 32 * 1024 * 1024  # sealed past this size: ~32 files a GiB instead of 1,000
REPACK_GARBAGE = 0.5  # a pack more than half garbage (bytes) is repacked


def copy_range(source: int, target: int, size: int, source_offset: int = 0, target_offset: int = 0) -> None:
    """Copy ``size`` bytes between two files inside the kernel (copy_file_range: no
    user-space round trip, a reflink where the filesystem offers one)."""
    done = 0
    while done < size:
        try:
            copied = os.copy_file_range(source, target, size - done, source_offset + done, target_offset + done)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.lseek(target, target_offset + done, os.SEEK_SET)  # sendfile writes at the position
            copied = os.sendfile(target, source, source_offset + done, size - done)  # older kernels
        if copied == 0:
            raise OSError(errno.EIO, "the source shrank while it was copied")
        done += copied


def write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class PackSlice(io.RawIOBase):
    """A seekable read-only view of one object inside a pack (pread: no shared position)."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._start, self._length, self._position = offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._length - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._start + self._position)
        if not data:
            raise OSError(errno.EIO, "the pack is shorter than its index says")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class PackWriter:
    """One pack being written in tmp/ by one thread at a time."""

    def __init__(self, index: PackIndex) -> None:
        self.index = index
        self.name = secrets.token_hex(16)
        self.temp = index.tmp / f"{self.name}.pack.part"
        self.fd: int | None = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.size = 0
        self.entries: list[list[str | int]] = []

    def append_file(self, source: int, size: int, digest: str, source_offset: int = 0) -> None:
        assert self.fd is not None
        copy_range(source, self.fd, size, source_offset, self.size)
        self.entries.append([digest, self.size, size])
        self.size += size

    def append_bytes(self, data: bytes | memoryview) -> None:
        """Bytes of an object whose name is not known yet (``commit`` or ``rewind`` follows)."""
        assert self.fd is not None
        write_at(self.fd, data, self.size + self._uncommitted)
        self._uncommitted += len(data)

    _uncommitted = 0

    def commit(self, digest: str) -> None:
        self.entries.append([digest, self.size, self._uncommitted])
        self.size += self._uncommitted
        self._uncommitted = 0

    def rewind(self) -> None:
        """Drop the bytes appended since the last object (a duplicate after all)."""
        assert self.fd is not None
        os.ftruncate(self.fd, self.size)
        self._uncommitted = 0

    def seal(self) -> list[Path]:
        """Make the pack durable, move it into packs/ and write its index (not yet fsynced:
        losing it only orphans the pack). Returns the two new files."""
        assert self.fd is not None
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None
        pack = self.index.directory / f"{self.name}.pack"
        os.rename(self.temp, pack)
        idx = self.index.directory / f"{self.name}.idx"
        temp = self.index.tmp / f"{self.name}.idx.part"
        try:
            temp.write_bytes(json.dumps(self.entries, separators=(",", ":")).encode())
            os.rename(temp, idx)
        except BaseException:  # a full disk: neither half stays
            temp.unlink(missing_ok=True)
            pack.unlink(missing_ok=True)
            raise
        self.index.add(self.name, self.entries)
        return [pack, idx]

    def abandon(self) -> None:
        """Remove the partial pack (a failed or full-disk run leaves no partial object)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


class PackBatch:
    """The objects one backup writes: a pack per copy thread at a time, each sealed when it
    reaches ``PACK_TARGET`` and the rest by ``seal_all`` before the manifest."""

    def __init__(self, index: PackIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._idle: list[PackWriter] = []
        self._open: list[PackWriter] = []
        self._names: set[str] = set()
        self.sealed: list[Path] = []

    def reserve(self, digest: str) -> bool:
        """True for the first caller with ``digest`` in this batch (two threads may hash the same)."""
        with self._lock:
            if digest in self._names:
                return False
            self._names.add(digest)
            return True

    def writer(self) -> PackWriter:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        writer = PackWriter(self.index)
        with self._lock:
            self._open.append(writer)
        return writer

    def release(self, writer: PackWriter) -> None:
        if writer.size >= PACK_TARGET:
            paths = writer.seal()
            with self._lock:
                self._open.remove(writer)
                self.sealed.extend(paths)
            return
        with self._lock:
            self._idle.append(writer)

    def seal_all(self) -> list[Path]:
        """Seal the open packs; returns every file this batch sealed (to make durable)."""
        with self._lock:
            writers, self._open, self._idle = self._open, [], []
        for writer in writers:
            if writer.entries:
                self.sealed.extend(writer.seal())
            else:
                writer.abandon()
        return self.sealed

    def abandon(self) -> None:
        with self._lock:
            writers, self._open, self._idle = self._open, [], []
        for writer in writers:
            writer.abandon()


class PackIndex:
    """Where each packed object is: every ``.idx`` of packs/, loaded once and refreshed when
    the directory changes (another process sealed or repacked packs)."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.directory = root / "packs"
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self.tmp = tmp
        self.lock_path = root / "lock"
        self._lock = threading.Lock()
        self._where: dict[str, tuple[str, int, int]] = {}
        self._packs: dict[str, list[list[str | int]]] = {}
        self._stamp: int | None = None

    def add(self, name: str, entries: list[list[str | int]]) -> None:
        with self._lock:
            self._packs[name] = entries
            for digest, offset, length in entries:
                self._where.setdefault(str(digest), (name, int(offset), int(length)))

    def refresh(self, *, force: bool = False) -> None:
        with self._lock:
            # The stamp before the listing: a change in between is seen by the next refresh.
            stamp = os.stat(self.directory).st_mtime_ns
            if stamp == self._stamp and not force:
                return
            names = {p[:-4] for p in os.listdir(self.directory) if p.endswith(".idx")}
            gone = set(self._packs) - names
            for name in gone:
                del self._packs[name]
            fresh = names - set(self._packs)
            self._stamp = stamp
        loaded = {}
        for name in fresh:
            with contextlib.suppress(FileNotFoundError):  # repacked meanwhile
                loaded[name] = json.loads((self.directory / f"{name}.idx").read_bytes())
        with self._lock:
            self._packs.update(loaded)
            if gone:  # an object may also be in a pack still there (a duplicate)
                self._where = {}
                loaded = self._packs
            for name, entries in loaded.items():
                for digest, offset, length in entries:
                    self._where.setdefault(str(digest), (name, int(offset), int(length)))

    def locate(self, digest: str, *, force: bool = False) -> tuple[Path, int, int] | None:
        """(pack, offset, length) of ``digest``; ``force`` re-lists the packs on a miss (a
        reader must not call an object missing that another process just packed)."""
        where = self._where.get(digest)
        if where is None:
            self.refresh(force=force)
            where = self._where.get(digest)
        if where is None:
            return None
        return self.directory / f"{where[0]}.pack", where[1], where[2]

    def open(self, digest: str) -> PackSlice | None:
        for attempt in (False, True):
            location = self.locate(digest, force=attempt)
            if location is None:
                if attempt:
                    return None
                continue
            try:
                return PackSlice(*location)
            except FileNotFoundError:
                self.refresh(force=True)  # repacked by another process: look again
        return None

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Held by a running backup: garbage collection waits for it."""
        with self.flock(fcntl.LOCK_SH) as held:
            assert held
            yield

    @contextlib.contextmanager
    def flock(self, mode: int) -> Iterator[bool]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock (so does the death of the process)

    # ------------------------------------------------------------------ garbage collection

    def collect(self, referenced: set[str], cutoff: float) -> dict[str, int]:
        """Delete packs no manifest needs, repack those mostly garbage (module docstring).
        Packs written after ``cutoff`` are left alone. The caller holds the exclusive lock."""
        from portal.storage.blobs import _fsync_dir

        removed = {"packs": 0, "repacked": 0, "packed_objects": 0}
        self.refresh(force=True)
        names = {p.rsplit(".", 1)[0] for p in os.listdir(self.directory)}
        for name in sorted(names):
            pack, idx = self.directory / f"{name}.pack", self.directory / f"{name}.idx"
            try:
                if pack.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                idx.unlink(missing_ok=True)  # an index without its pack names nothing
                continue
            entries = self._packs.get(name)
            if entries is None:  # a pack whose index was never written (a killed run)
                pack.unlink()
                removed["packs"] += 1
                continue
            live = [e for e in entries if str(e[0]) in referenced and self._where.get(str(e[0]), ("",))[0] == name]
            total = sum(int(e[2]) for e in entries)
            if live and total - sum(int(e[2]) for e in live) <= REPACK_GARBAGE * total:
                continue  # kept until it is mostly garbage
            if live:
                self._repack(pack, live)
                removed["repacked"] += 1
            idx.unlink()  # first: an index never names a deleted pack
            _fsync_dir(self.directory)
            pack.unlink()
            with self._lock:
                self._packs.pop(name, None)
            removed["packs"] += 1
            removed["packed_objects"] += len(entries) - len(live)
        self.refresh(force=True)
        return removed

    def _repack(self, pack: Path, live: list[list[str | int]]) -> None:
        from portal.storage.blobs import _fsync_dir

        writer = PackWriter(self)
        try:
            source = os.open(pack, os.O_RDONLY)
            try:
                for digest, offset, length in live:
                    writer.append_file(source, int(length), str(digest), int(offset))
            finally:
                os.close(source)
            paths = writer.seal()
        except BaseException:
            writer.abandon()
            raise
        fd = os.open(paths[1], os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.directory)
        with self._lock:  # the new copies are the locations from now on
            for digest, offset, length in writer.entries:
                self._where[str(digest)] = (writer.name, int(offset), int(length))
