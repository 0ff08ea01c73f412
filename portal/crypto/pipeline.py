"""The threaded encryption pipeline around the streaming AEAD.

``encrypt_pipelined`` seals an upload while its body is still arriving; ``decrypt_ahead``
reads and decrypts the next segments of a download while the previous one is sent. Both keep
at most a few chunks in flight, so memory stays flat whatever the file's size.

A decrypt-ahead worker was tried before and removed (issue 10 D13, 2026-12-04) when
``cryptography`` held the GIL while it decrypted: the worker then only added hand-offs. Since
cryptography 50 releases it (tests/crypto/test_pipeline.py checks), ``preadv``, AES-GCM and
the socket send all run without the GIL and overlap on two cores (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

# Chunks (about 1 MiB each) in flight between the reading thread and each crypto worker:
# enough to keep them busy, small enough to keep memory flat.
PIPELINE_DEPTH = 3
# Decrypted segments (1 MiB each) a download's worker may hold ahead of the sending thread.
DECRYPT_AHEAD_DEPTH = 2
# Downloads of one process that decrypt ahead at the same time; the others decrypt in their
# sending thread. The worker buys throughput with a spare core (on a saturated machine it
# cost up to ~0.05 s/GiB more CPU in hand-offs, docs/performance.md); with several downloads
# in one process the cores are busy anyway, and more threads would contend for its GIL.
DECRYPT_AHEAD_WORKERS = 1
_ahead_slots = threading.BoundedSemaphore(DECRYPT_AHEAD_WORKERS)
# A stream up to this size is hashed and sealed by the calling thread alone.
INLINE_BYTES = 256 * 1024


@dataclass
class EncryptResult:
    size: int
    sha256: str
    head: bytes  # the plaintext's first ``head_bytes``, for the caller's type sniffing


_DONE = object()


def encrypt_pipelined(
    raw: BinaryIO,
    key: bytes,
    aad: bytes,
    chunks: Iterable[bytes],
    check_size: Callable[[int], None],
    depth: int = PIPELINE_DEPTH,
    head_bytes: int = 8192,
    inline_bytes: int = INLINE_BYTES,
) -> EncryptResult:
    """Encrypt ``chunks`` into ``raw``: this thread reads the chunks (the multipart parser,
    pure Python, holds the GIL); one worker hashes them (SHA-256), another seals (AES-GCM)
    and writes them, each with at most ``depth`` chunks in flight. hashlib, AES-GCM and
    write() release the GIL, so hashing and sealing+writing (about the same cost, measured)
    run on both cores while this thread waits for the socket. Both workers read the same
    chunk objects, which nobody modifies once handed out.

    The first ``inline_bytes`` are hashed and buffered in this thread, and the workers start
    only when the stream grows past them: for a small file, starting and joining two threads
    cost more than its crypto (see docs/performance.md, small files). The hash and the
    writer are the same objects either way, so the blob does not depend on the path taken.

    The workers are always joined before returning or raising: a client that disconnects
    leaves no thread behind.
    """
    from portal.crypto.streaming import EncryptingWriter

    # A new blob is written once and read later: O_DIRECT spares the page cache (see
    # portal.crypto.streaming._DirectSink), and the hash is computed by its own worker.
    writer = EncryptingWriter(raw, key, aad, hash_plaintext=False, direct_io=True)
    digest = hashlib.sha256()
    failure: list[BaseException] = []
    stop = threading.Event()
    queues: list[queue.Queue[object]] = []
    threads: list[threading.Thread] = []

    def consume(work: queue.Queue[object], handle: Callable[[Any], object]) -> None:
        try:
            while True:
                item = work.get()
                if item is _DONE or stop.is_set():
                    return
                handle(item)
                del item  # let the reader reuse the buffer as soon as possible
        except BaseException as error:  # handed to the reading thread
            failure.append(error)
            stop.set()

    def start_workers() -> None:
        # Both named like the single worker they replace: tests look for leftover "coffre-encrypt" threads.
        for name, handle in (("coffre-encrypt", writer.write), ("coffre-encrypt", digest.update)):
            work: queue.Queue[object] = queue.Queue(maxsize=depth)
            queues.append(work)
            threads.append(threading.Thread(target=consume, args=(work, handle), name=name, daemon=True))
            threads[-1].start()

    def hand_over(item: object) -> None:
        for work in queues:
            while True:
                if failure:
                    raise failure[0]
                try:
                    work.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue

    head = bytearray()
    written = 0
    finished = False
    try:
        for chunk in chunks:
            if not chunk:
                continue
            written += len(chunk)
            check_size(written)
            if len(head) < head_bytes:
                head.extend(chunk[: head_bytes - len(head)])
            if not threads and written <= inline_bytes:
                digest.update(chunk)
                writer.write(chunk)
            else:
                if not threads:
                    start_workers()
                hand_over(chunk)
            del chunk
        if threads:
            hand_over(_DONE)
            for thread in threads:
                thread.join()
            if failure:
                raise failure[0]
        writer.finish()
        finished = True
    finally:
        if any(thread.is_alive() for thread in threads):
            stop.set()
            for work in queues:
                # Unblock a worker waiting on an empty queue; drop what it had not handled yet.
                with contextlib.suppress(queue.Empty):
                    while True:
                        work.get_nowait()
                with contextlib.suppress(queue.Full):
                    work.put_nowait(_DONE)
            for thread in threads:
                thread.join()
        if not finished:
            writer.abort()
    return EncryptResult(writer.plaintext_size, digest.hexdigest(), bytes(head))


def decrypt_ahead(segments: Iterator[bytes], depth: int = DECRYPT_AHEAD_DEPTH) -> Iterator[bytes]:
    """Yield what ``segments`` yields, advanced by a worker thread up to ``depth`` items ahead
    of the caller.

    Why a thread: reading a segment (``preadv``, from the page cache or the disk) and
    decrypting it (AES-GCM) both release the GIL, and so does the caller's socket send, so
    they run on two cores instead of one after the other, and the sending thread is left
    with little more than the raw floor's work. ``segments`` is resumed only by
    the worker once this generator has started; closing this generator stops and joins the
    worker, so a client that goes away leaves no thread behind. An exception raised by
    ``segments`` is raised here, after the items yielded before it. When this process already
    runs ``DECRYPT_AHEAD_WORKERS`` of them, ``segments`` is consumed here, without a worker.
    """
    if not _ahead_slots.acquire(blocking=False):
        yield from segments
        return
    try:
        yield from _ahead(segments, depth)
    finally:
        _ahead_slots.release()


def _ahead(segments: Iterator[bytes], depth: int) -> Iterator[bytes]:
    work: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                work.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for item in segments:
                if not put(item):
                    return
                del item
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)
        put(_DONE)

    thread = threading.Thread(target=worker, name="coffre-decrypt", daemon=True)
    thread.start()
    try:
        while (item := work.get()) is not _DONE:
            yield item  # type: ignore[misc]
            del item
        thread.join()
        if failure:
            raise failure[0]
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                work.get_nowait()
        thread.join()
