"""Blobs written around the page cache (O_DIRECT) and read through it with sequential
readahead: same format, same checks, a fallback to ordinary writes when the file system
refuses O_DIRECT, and downloads that leave the blob in the page cache."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import random
import threading

import pytest

from portal.crypto import streaming
from portal.crypto.pipeline import encrypt_pipelined
from portal.crypto.streaming import (
    DIRECT_FLUSH,
    SEGMENT_SIZE,
    EncryptingWriter,
    IntegrityError,
    ciphertext_length,
    decrypt_stream,
)

KEY = bytes(range(32))
AAD = b"coffre/v2|org=1|version=" + b"a" * 32
O_DIRECT = getattr(os, "O_DIRECT", 0)


@pytest.fixture
def blob_path(tmp_path):
    path = tmp_path / "blob"
    with open(path, "wb", buffering=0) as probe:
        if streaming._DirectSink.open(probe) is None:
            pytest.skip("this file system refuses O_DIRECT")
    return path


def write_blob(path, plaintext: bytes, *, direct: bool, seed: int = 1) -> EncryptingWriter:
    rng = random.Random(seed)
    with open(path, "wb", buffering=0) as raw:
        writer = EncryptingWriter(raw, KEY, AAD, direct_io=direct)
        view, at = memoryview(plaintext), 0
        while at < len(plaintext):
            step = rng.choice([1, 4095, 65_536, SEGMENT_SIZE - 7, SEGMENT_SIZE + 3, 3 * SEGMENT_SIZE])
            writer.write(view[at : at + step])
            at += step
        writer.finish()
        assert not fcntl.fcntl(raw.fileno(), fcntl.F_GETFL) & O_DIRECT
    return writer


SIZES = [
    0,
    1,
    4095,
    4096,
    SEGMENT_SIZE,
    SEGMENT_SIZE + 1,
    DIRECT_FLUSH - 1,
    DIRECT_FLUSH + 4097,
    7 * SEGMENT_SIZE + 123,
]


@pytest.mark.parametrize("size", SIZES)
def test_direct_blob_round_trips_through_both_readers(blob_path, size, monkeypatch):
    real_write, direct_writes = os.write, []

    def spy(fd, data):  # passes every write through, noting those made with O_DIRECT
        if fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT:
            direct_writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(streaming.os, "write", spy)
    plaintext = os.urandom(size)
    writer = write_blob(blob_path, plaintext, direct=True)
    # Blobs past the staging size bypass the page cache; small ones are written normally.
    assert bool(direct_writes) == (ciphertext_length(size) >= DIRECT_FLUSH)
    assert all(n % 4096 == 0 for n in direct_writes)
    assert writer.sha256 == hashlib.sha256(plaintext).hexdigest()
    assert blob_path.stat().st_size == ciphertext_length(size)
    # The file read through the page cache and the same bytes read from memory.
    with open(blob_path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == plaintext
        assert not fcntl.fcntl(raw.fileno(), fcntl.F_GETFL) & O_DIRECT
    blob = blob_path.read_bytes()
    assert b"".join(decrypt_stream(io.BytesIO(blob), KEY, AAD)) == plaintext


def evict(path) -> None:
    """Drop the file's (clean) pages from the page cache, as if it had never been read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached(path, start: int, stop: int) -> bool:
    """Whether bytes [start, stop) of the file are all in the page cache: RWF_NOWAIT makes a
    buffered read fail (EAGAIN) or stop short instead of waiting for the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = bytearray(1 << 20)
        at = start
        while at < stop:
            view = memoryview(buffer)[: min(len(buffer), stop - at)]
            try:
                count = os.preadv(fd, [view], at, os.RWF_NOWAIT)
            except BlockingIOError:
                return False
            if count < len(view):
                return False
            at += count
        return True
    finally:
        os.close(fd)


@pytest.fixture
def nowait_probe(blob_path):
    """Skip where the page cache cannot be probed (no RWF_NOWAIT) or a file not evicted."""
    if not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("no RWF_NOWAIT on this platform")
    blob_path.write_bytes(os.urandom(1 << 16))
    evict(blob_path)
    if cached(blob_path, 0, 1 << 16):
        pytest.skip("this file system keeps evicted pages (or ignores DONTNEED)")


@pytest.mark.parametrize("direct", [True, False], ids=["written-direct", "written-buffered"])
def test_reads_never_use_o_direct_and_serve_ranges(blob_path, direct, monkeypatch):
    real_preadv, direct_reads = os.preadv, []

    def spy(fd, buffers, offset, *flags):  # passes every read through, noting O_DIRECT ones
        if fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT:
            direct_reads.append(offset)
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(streaming.os, "preadv", spy)
    plaintext = os.urandom(6 * SEGMENT_SIZE + 999)
    write_blob(blob_path, plaintext, direct=direct)
    for start, end in [(0, None), (5, 6), (SEGMENT_SIZE - 2, SEGMENT_SIZE + 2), (4 * SEGMENT_SIZE + 1, None)]:
        with open(blob_path, "rb") as raw:
            assert b"".join(decrypt_stream(raw, KEY, AAD, start, end)) == plaintext[start:end]
            assert not fcntl.fcntl(raw.fileno(), fcntl.F_GETFL) & O_DIRECT
    assert not direct_reads


def test_a_download_leaves_the_blob_in_the_page_cache(blob_path, nowait_probe):
    # Blobs are written around the page cache; the first download reads them from the disk
    # and a second one must be served from memory.
    plaintext = os.urandom(DIRECT_FLUSH + 3 * SEGMENT_SIZE + 5)
    write_blob(blob_path, plaintext, direct=True)
    evict(blob_path)
    size = blob_path.stat().st_size
    assert not cached(blob_path, 0, size)
    with open(blob_path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == plaintext
    assert cached(blob_path, 0, size)


@pytest.mark.parametrize("start", [0, 5 * SEGMENT_SIZE + 3], ids=["whole", "range"])
def test_reads_ask_for_readahead_beyond_the_segment_being_read(blob_path, start, monkeypatch):
    # Without it a cold read waits for the disk on every segment; the hints are passed
    # through to the kernel, the spies only note them.
    real_advise, real_preadv, events = os.posix_fadvise, os.preadv, []

    def advise(fd, offset, length, hint):
        events.append(("advise", offset, length, hint))
        return real_advise(fd, offset, length, hint)

    def preadv(fd, buffers, offset, *flags):
        events.append(("read", offset, sum(len(b) for b in buffers), None))
        return real_preadv(fd, buffers, offset, *flags)

    plaintext = os.urandom(2 * streaming.READAHEAD + 3 * SEGMENT_SIZE + 1)
    write_blob(blob_path, plaintext, direct=True)
    size = blob_path.stat().st_size
    monkeypatch.setattr(streaming.os, "posix_fadvise", advise)
    monkeypatch.setattr(streaming.os, "preadv", preadv)
    with open(blob_path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD, start, None)) == plaintext[start:]
    assert ("advise", 0, 0, os.POSIX_FADV_SEQUENTIAL) in events
    asked: list[tuple[int, int]] = []
    reads = 0
    for kind, offset, length, hint in events:
        if kind == "advise" and hint == os.POSIX_FADV_WILLNEED:
            asked.append((offset, offset + length))
        elif kind == "read":
            reads += 1
            wanted_to = min(offset + length + streaming.READAHEAD // 2, size)
            covered = offset
            for lo, hi in sorted(asked):
                if lo <= covered < hi:
                    covered = hi
            assert covered >= wanted_to, (offset, asked)
    assert reads > 5


def test_a_blob_truncated_while_it_streams_fails_authentication(blob_path):
    plaintext = os.urandom(6 * SEGMENT_SIZE)
    write_blob(blob_path, plaintext, direct=True)
    with open(blob_path, "rb") as raw:
        chunks = decrypt_stream(raw, KEY, AAD)
        assert next(chunks) == plaintext[:SEGMENT_SIZE]
        os.truncate(blob_path, 3 * SEGMENT_SIZE)
        with pytest.raises(IntegrityError):
            for _ in chunks:
                pass


def test_streaming_a_large_blob_keeps_memory_flat(blob_path):
    # One sealed segment buffer and the segment being yielded, whatever the blob's size.
    import tracemalloc

    block = os.urandom(SEGMENT_SIZE)
    with open(blob_path, "wb", buffering=0) as raw:
        writer = EncryptingWriter(raw, KEY, AAD, direct_io=True)
        for _ in range(48):
            writer.write(block)
        writer.finish()
    tracemalloc.start()
    try:
        with open(blob_path, "rb") as raw:
            total = sum(len(chunk) for chunk in decrypt_stream(raw, KEY, AAD))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 48 * SEGMENT_SIZE
    assert peak < 4 * SEGMENT_SIZE


def test_tampering_is_still_detected_on_a_blob_written_direct(blob_path):
    plaintext = os.urandom(5 * SEGMENT_SIZE)
    write_blob(blob_path, plaintext, direct=True)
    with open(blob_path, "r+b") as raw:
        raw.seek(3 * SEGMENT_SIZE + 100)
        byte = raw.read(1)
        raw.seek(-1, os.SEEK_CUR)
        raw.write(bytes([byte[0] ^ 1]))
    with open(blob_path, "rb") as raw, pytest.raises(IntegrityError):
        b"".join(decrypt_stream(raw, KEY, AAD))


def test_a_refused_direct_write_falls_back_to_ordinary_writes(blob_path, monkeypatch):
    # A file system that rejects O_DIRECT I/O answers EINVAL; that cannot be produced on this
    # machine's ext4/tmpfs, so the first direct write is made to fail that way.
    real_write = os.write
    refused = []

    def write(fd, data):
        if not refused and fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(streaming.os, "write", write)
    plaintext = os.urandom(DIRECT_FLUSH + 3 * SEGMENT_SIZE + 17)
    write_blob(blob_path, plaintext, direct=True)
    assert refused
    with open(blob_path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == plaintext


def test_other_write_errors_are_not_swallowed(blob_path, monkeypatch):
    def write(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(streaming.os, "write", write)
    with open(blob_path, "wb", buffering=0) as raw, pytest.raises(OSError) as caught:
        writer = EncryptingWriter(raw, KEY, AAD, direct_io=True)
        writer.write(os.urandom(DIRECT_FLUSH + SEGMENT_SIZE + 1))
    assert caught.value.errno == errno.ENOSPC


def test_non_file_targets_use_ordinary_writes():
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, KEY, AAD, direct_io=True)
    writer.write(os.urandom(DIRECT_FLUSH + 5))
    writer.finish()
    assert len(sink.getvalue()) == ciphertext_length(DIRECT_FLUSH + 5)


def test_a_writer_without_its_own_hash_refuses_to_report_one():
    writer = EncryptingWriter(io.BytesIO(), KEY, AAD, hash_plaintext=False)
    writer.write(b"abc")
    writer.finish()
    with pytest.raises(streaming.CryptoError):
        _ = writer.sha256


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "coffre-encrypt"]


def test_pipeline_hashes_and_seals_in_two_workers(blob_path):
    chunks = [os.urandom(n) for n in (10, SEGMENT_SIZE, 3 * SEGMENT_SIZE + 5, 7)]
    plaintext = b"".join(chunks)
    with open(blob_path, "wb", buffering=0) as raw:
        result = encrypt_pipelined(raw, KEY, AAD, iter(chunks), lambda size: None)
    assert (result.size, result.sha256) == (len(plaintext), hashlib.sha256(plaintext).hexdigest())
    with open(blob_path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == plaintext
    assert not pipeline_threads()


def test_pipeline_stops_both_workers_and_restores_the_file_on_error(blob_path):
    class TooBigError(Exception):
        pass

    def check(size: int) -> None:
        if size > 6 * SEGMENT_SIZE:
            raise TooBigError

    chunks = (os.urandom(SEGMENT_SIZE) for _ in range(20))
    with open(blob_path, "wb", buffering=0) as raw:
        with pytest.raises(TooBigError):
            encrypt_pipelined(raw, KEY, AAD, chunks, check)
        assert not fcntl.fcntl(raw.fileno(), fcntl.F_GETFL) & O_DIRECT
    assert not pipeline_threads()
