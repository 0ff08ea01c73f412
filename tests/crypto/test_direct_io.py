"""Blobs written and read around the page cache (O_DIRECT): same format, same checks, and a
fallback to ordinary I/O when the file system refuses it."""

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
    # The file read with O_DIRECT (large blobs) and the same bytes read from memory.
    with open(blob_path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == plaintext
        assert not fcntl.fcntl(raw.fileno(), fcntl.F_GETFL) & O_DIRECT
    blob = blob_path.read_bytes()
    assert b"".join(decrypt_stream(io.BytesIO(blob), KEY, AAD)) == plaintext


def test_buffered_blob_reads_with_o_direct_and_ranges(blob_path):
    plaintext = os.urandom(6 * SEGMENT_SIZE + 999)
    write_blob(blob_path, plaintext, direct=False)
    for start, end in [(0, None), (5, 6), (SEGMENT_SIZE - 2, SEGMENT_SIZE + 2), (4 * SEGMENT_SIZE + 1, None)]:
        with open(blob_path, "rb") as raw:
            assert b"".join(decrypt_stream(raw, KEY, AAD, start, end)) == plaintext[start:end]


def test_tampering_is_still_detected_on_the_direct_read(blob_path):
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
