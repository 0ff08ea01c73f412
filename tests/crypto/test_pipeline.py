"""The encryption pipeline's small-body path: a body that fits in ``INLINE_BYTES`` is hashed
and sealed in the calling thread (no worker is started), with the same result, the same
size checks and nothing left behind."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import sys
import threading
import time
import tracemalloc

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portal.crypto import pipeline, streaming
from portal.crypto.pipeline import INLINE_BYTES, encrypt_pipelined
from portal.crypto.streaming import HEADER_SIZE, SEGMENT_SIZE, EncryptingWriter, decrypt_stream

KEY = bytes(range(32))
AAD = b"coffre/v2|org=1|version=" + b"b" * 32


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "coffre-encrypt"]


@pytest.fixture
def fixed_randomness(monkeypatch):
    """Salt and nonce prefix come from secrets.token_bytes; replaying the same bytes for both
    runs is the only way to compare two blobs byte for byte."""

    def install():
        counter = itertools.count()
        monkeypatch.setattr(
            streaming.secrets, "token_bytes", lambda n: bytes((next(counter) + i) % 256 for i in range(n))
        )

    return install


def run(chunks, *, inline_bytes: int, check=lambda size: None, tmp_path=None, seen=None):
    """Encrypt ``chunks`` into a real file; ``seen`` collects the worker threads alive at each
    size check (the checks run in the calling thread, between chunks)."""

    def checking(size: int) -> None:
        if seen is not None:
            seen.append(len(workers()))
        check(size)

    path = tmp_path / f"blob-{inline_bytes}"
    with open(path, "wb", buffering=0) as raw:
        result = encrypt_pipelined(raw, KEY, AAD, iter(chunks), checking, inline_bytes=inline_bytes)
    return result, path.read_bytes()


@pytest.mark.parametrize(
    "sizes",
    [[0], [1], [4096], [8192], [100, 0, 3000], [INLINE_BYTES], [INLINE_BYTES - 1, 1], [INLINE_BYTES, 1]],
)
def test_small_bodies_are_sealed_in_the_calling_thread_byte_for_byte_as_by_the_workers(
    sizes, tmp_path, fixed_randomness
):
    chunks = [os.urandom(n) for n in sizes]
    plaintext = b"".join(chunks)
    fixed_randomness()
    seen: list[int] = []
    inline, inline_blob = run(chunks, inline_bytes=INLINE_BYTES, tmp_path=tmp_path, seen=seen)
    fixed_randomness()
    threaded, threaded_blob = run(chunks, inline_bytes=0, tmp_path=tmp_path)
    assert inline_blob == threaded_blob
    assert (inline.size, inline.sha256, inline.head) == (threaded.size, threaded.sha256, threaded.head)
    assert (inline.size, inline.sha256) == (len(plaintext), hashlib.sha256(plaintext).hexdigest())
    assert inline.head == plaintext[:8192]
    assert b"".join(decrypt_stream(io.BytesIO(inline_blob), KEY, AAD)) == plaintext
    # Within the limit no worker ever ran (past it they take over: the next test).
    if len(plaintext) <= INLINE_BYTES:
        assert not any(seen)
    assert not workers()


def test_a_large_body_starts_inline_and_hands_over_to_the_workers(tmp_path, fixed_randomness):
    chunks = [os.urandom(n) for n in (1000, INLINE_BYTES, SEGMENT_SIZE, 3 * SEGMENT_SIZE + 5, 7)]
    fixed_randomness()
    seen: list[int] = []
    handed_over, blob = run(chunks, inline_bytes=INLINE_BYTES, tmp_path=tmp_path, seen=seen)
    fixed_randomness()
    _, threaded_blob = run(chunks, inline_bytes=0, tmp_path=tmp_path)
    assert blob == threaded_blob
    assert handed_over.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert seen[0] == 0 and seen[-1] == 2
    assert not workers()


class TooBigError(Exception):
    pass


@pytest.mark.parametrize("inline_bytes", [INLINE_BYTES, 0])
def test_size_checks_refuse_the_same_chunk_on_both_paths(tmp_path, inline_bytes):
    checked: list[int] = []

    def check(size: int) -> None:
        checked.append(size)
        if size > 5000:
            raise TooBigError

    path = tmp_path / "blob"
    with open(path, "wb", buffering=0) as raw, pytest.raises(TooBigError):
        encrypt_pipelined(raw, KEY, AAD, iter([b"a" * 3000, b"b" * 3000, b"c"]), check, inline_bytes=inline_bytes)
    assert checked == [3000, 6000]
    assert not workers()


def test_a_failing_stream_on_the_small_path_leaves_no_thread_and_writes_nothing(tmp_path):
    def chunks():
        yield b"secret" * 100
        raise OSError("client went away")

    path = tmp_path / "blob"
    with open(path, "wb", buffering=0) as raw, pytest.raises(OSError, match="went away"):
        encrypt_pipelined(raw, KEY, AAD, chunks(), lambda size: None)
    assert not workers()
    # Nothing past the header reached the file (the caller deletes it).
    assert len(path.read_bytes()) <= HEADER_SIZE


def test_a_small_writer_does_not_allocate_whole_segments():
    """Two zeroed 1 MiB buffers per blob (a page fault per 4 KiB) were most of the cost of
    sealing a small file; a writer now holds only what it was given."""
    tracemalloc.start()
    try:
        writer = EncryptingWriter(io.BytesIO(), KEY, AAD)
        writer.write(os.urandom(8192))
        writer.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak


@pytest.mark.parametrize("step", [1, 4095, 65_536, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1])
def test_a_growing_segment_buffer_gives_the_same_blob(step, fixed_randomness):
    """The segment buffer grows with the data; the blob must not depend on how it was fed."""
    plaintext = os.urandom(2 * SEGMENT_SIZE + 12_345)
    blobs = []
    for feed in (len(plaintext), step):
        fixed_randomness()
        sink = io.BytesIO()
        writer = EncryptingWriter(sink, KEY, AAD)
        for at in range(0, len(plaintext), feed):
            writer.write(plaintext[at : at + feed])
        writer.finish()
        blobs.append(sink.getvalue())
    assert blobs[0] == blobs[1]
    assert b"".join(decrypt_stream(io.BytesIO(blobs[0]), KEY, AAD)) == plaintext


def test_pipeline_module_exposes_its_threshold():
    assert pipeline.INLINE_BYTES >= 64 * 1024


# ---------------------------------------------------------------- decrypt-ahead (downloads)


def decrypt_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "coffre-decrypt"]


def sealed_blob(tmp_path, segments: int) -> tuple[str, bytes]:
    plaintext = os.urandom(segments * SEGMENT_SIZE + 123)
    path = tmp_path / "blob"
    with open(path, "wb", buffering=0) as raw:
        writer = EncryptingWriter(raw, KEY, AAD, direct_io=True)
        writer.write(plaintext)
        writer.finish()
    return str(path), plaintext


def test_decrypt_ahead_yields_the_same_segments_in_order_from_a_worker(tmp_path):
    path, plaintext = sealed_blob(tmp_path, 6)
    threads_seen: set[str] = set()

    def segments():
        for chunk in decrypt_stream(raw, KEY, AAD):
            threads_seen.add(threading.current_thread().name)
            yield chunk

    with open(path, "rb") as raw:
        received = list(pipeline.decrypt_ahead(segments()))
    assert b"".join(received) == plaintext
    assert [len(chunk) for chunk in received] == [SEGMENT_SIZE] * 6 + [123]
    assert threads_seen == {"coffre-decrypt"}
    assert not decrypt_workers()


def test_decrypt_ahead_raises_a_late_integrity_error_after_the_good_segments(tmp_path):
    path, plaintext = sealed_blob(tmp_path, 5)
    with open(path, "r+b") as raw:
        raw.seek(HEADER_SIZE + 3 * (SEGMENT_SIZE + 16) + 7)
        byte = raw.read(1)
        raw.seek(-1, os.SEEK_CUR)
        raw.write(bytes([byte[0] ^ 1]))
    received = bytearray()
    with open(path, "rb") as raw, pytest.raises(streaming.IntegrityError, match="segment 3"):
        for chunk in pipeline.decrypt_ahead(decrypt_stream(raw, KEY, AAD)):
            received.extend(chunk)
    assert bytes(received) == plaintext[: 3 * SEGMENT_SIZE]
    assert not decrypt_workers()


def test_closing_decrypt_ahead_early_stops_and_joins_the_worker(tmp_path):
    path, plaintext = sealed_blob(tmp_path, 8)
    with open(path, "rb") as raw:
        source = decrypt_stream(raw, KEY, AAD)
        ahead = pipeline.decrypt_ahead(source, depth=2)
        assert next(ahead) == plaintext[:SEGMENT_SIZE]
        assert decrypt_workers()
        ahead.close()
        assert not decrypt_workers()
        # The source was left between two segments, never resumed concurrently: it closes cleanly.
        source.close()


def test_decrypt_ahead_keeps_memory_flat_whatever_the_size(tmp_path):
    """At most ``depth`` segments queued, one being decrypted and one being consumed."""
    path, _ = sealed_blob(tmp_path, 40)
    tracemalloc.start()
    try:
        with open(path, "rb") as raw:
            total = 0
            for chunk in pipeline.decrypt_ahead(decrypt_stream(raw, KEY, AAD), depth=2):
                total += len(chunk)
                del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 40 * SEGMENT_SIZE + 123
    assert peak < 7 * SEGMENT_SIZE


def test_aes_gcm_decryption_releases_the_gil():
    """decrypt_ahead's premise (cryptography 50 releases the GIL in AEAD calls on inputs of
    2 KiB and more): another thread runs Python code while one call decrypts.

    With a switch interval far longer than the test, this thread never has to give the GIL
    up between ``began`` and ``ended``; the other thread lets it go at every iteration
    (``sleep(0)``). So it can record a time inside the call only if the call released the
    GIL: a call that holds it (``bytes.translate``, say) leaves none, whatever the load.
    ``decrypt_into`` a buffer already touched, because ``decrypt`` allocates and zeroes its
    output before it lets the GIL go (for a 1 MiB segment that is a memset, ~0.01 s/GiB). A
    busy machine may not run the other thread during one call, hence a few tries."""
    aead = AESGCM(bytes(32))
    nonce = bytes(12)
    sealed = aead.encrypt(nonce, bytes(64 << 20), b"")
    out = bytearray(len(sealed) - 16)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        for _ in range(10):
            inside, done = threading.Event(), threading.Event()
            ticks: list[float] = []

            def spin(inside=inside, done=done, ticks=ticks):
                inside.wait()
                while not done.is_set():
                    ticks.append(time.perf_counter())
                    time.sleep(0)

            spinner = threading.Thread(target=spin)
            spinner.start()
            inside.set()
            time.sleep(0.005)
            began = time.perf_counter()
            aead.decrypt_into(nonce, sealed, b"", out)
            ended = time.perf_counter()
            done.set()
            spinner.join()
            if sum(began < tick < ended for tick in ticks) >= 2:
                return
    finally:
        sys.setswitchinterval(interval)
    pytest.fail("another thread could not run while AES-GCM decrypted: the GIL is held")


def test_one_download_per_process_decrypts_ahead_the_others_inline(tmp_path):
    """A second download running alongside the first decrypts in its own thread; once the
    first is closed, the next one gets the worker again."""
    path, plaintext = sealed_blob(tmp_path, 5)
    with open(path, "rb") as first_raw, open(path, "rb") as second_raw, open(path, "rb") as third_raw:
        first = pipeline.decrypt_ahead(decrypt_stream(first_raw, KEY, AAD))
        assert next(first) == plaintext[:SEGMENT_SIZE]
        received = bytearray()
        for chunk in pipeline.decrypt_ahead(decrypt_stream(second_raw, KEY, AAD)):
            received.extend(chunk)
            assert len(decrypt_workers()) == 1  # the first download's only
        assert bytes(received) == plaintext
        assert b"".join(first) == plaintext[SEGMENT_SIZE:]
        assert not decrypt_workers()
        third = pipeline.decrypt_ahead(decrypt_stream(third_raw, KEY, AAD))
        assert next(third) == plaintext[:SEGMENT_SIZE]
        assert len(decrypt_workers()) == 1
        third.close()
        assert not decrypt_workers()
