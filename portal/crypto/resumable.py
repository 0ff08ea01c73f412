"""A blob written across several requests (resumable uploads): the file is the writer's state.

The blob format is the one of ``portal.crypto.streaming`` (header, sealed segments). For a
stream whose total length is known from the start, whether a segment is the last one
follows from its index, so every full segment can be sealed as soon as its last byte
arrives, and the blob on disk always ends at a segment boundary between requests:

    durable offset = (blob size - header) // sealed segment size * SEGMENT_SIZE

Plaintext past that boundary (less than a segment, held in memory only) is dropped when a
request ends early; the client resends from the offset the server reports, as tus intends.
No plaintext is ever written anywhere but into the cipher.

What is not in the file is the plaintext's SHA-256 so far: hashlib states cannot be saved.
``ResumableWriter.resume`` re-reads and authenticates the sealed segments (which also finds a
torn tail after a crash, cut back to the last authentic segment) and rebuilds the hash; a
small per-process cache keeps the hash of uploads resumed in the same process, so a client
sending many small requests does not pay that re-read each time.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag

from portal.crypto.errors import CryptoError
from portal.crypto.streaming import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    PREFIX_SIZE,
    SALT_SIZE,
    SEALED_SEGMENT_SIZE,
    SEGMENT_SIZE,
    TAG_SIZE,
    _nonce_and_aad,
    _segment_aead,
    write_fully,
)

# Hash states of uploads in progress in this process: (sealed segment count, sha256 state).
_HASH_CACHE: OrderedDict[str, tuple[int, Any]] = OrderedDict()
_HASH_CACHE_SIZE = 256
_HASH_LOCK = threading.Lock()
# Shared by the process; each writer has at most one segment in it at a time, so its hash
# sees the segments in order.
_HASHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="coffre-hash")


def _remember(cache_key: str | None, index: int, digest: Any) -> None:
    if cache_key is None:
        return
    with _HASH_LOCK:
        _HASH_CACHE[cache_key] = (index, digest.copy())
        _HASH_CACHE.move_to_end(cache_key)
        while len(_HASH_CACHE) > _HASH_CACHE_SIZE:
            _HASH_CACHE.popitem(last=False)


def forget(cache_key: str) -> None:
    with _HASH_LOCK:
        _HASH_CACHE.pop(cache_key, None)


def _cached(cache_key: str | None, index: int) -> Any | None:
    if cache_key is None:
        return None
    with _HASH_LOCK:
        entry = _HASH_CACHE.get(cache_key)
    if entry is None or entry[0] != index:
        return None
    return entry[1].copy()


def segments_for(total: int) -> int:
    """How many segments a stream of ``total`` bytes is sealed in (an empty one has one)."""
    return max(1, -(-total // SEGMENT_SIZE))


def durable_offset(blob_size: int, total: int) -> int:
    """The plaintext bytes a partial blob of ``blob_size`` bytes holds, by its size alone."""
    if blob_size < HEADER_SIZE:
        return 0
    sealed = (blob_size - HEADER_SIZE) // SEALED_SEGMENT_SIZE
    return min(sealed * SEGMENT_SIZE, total)


class ResumableWriter:
    """Seals a stream of ``total`` plaintext bytes into ``raw`` (a file opened read-write),
    one request's part at a time. ``offset`` is the durable plaintext offset."""

    def __init__(self, raw: BinaryIO, key: bytes, aad: bytes, total: int, salt: bytes, prefix: bytes) -> None:
        if total < 0:
            raise ValueError("negative length")
        self._raw = raw
        self._aead = _segment_aead(key, salt, aad)
        self._aad = aad
        self._prefix = prefix
        self.total = total
        self._segments = segments_for(total)
        self._index = 0
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._complete = False
        self._sealed = bytearray()
        # The hash of the previous segment runs in a worker while this one is sealed
        # (hashlib releases the GIL): hashing and AES-GCM cost about the same.
        self._hashing: Future[None] | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, raw: BinaryIO, key: bytes, aad: bytes, total: int) -> ResumableWriter:
        """Start a new blob in the empty file ``raw``: writes and fsyncs its header."""
        salt, prefix = secrets.token_bytes(SALT_SIZE), secrets.token_bytes(PREFIX_SIZE)
        writer = cls(raw, key, aad, total, salt, prefix)
        raw.seek(0)
        writer._write_all(MAGIC + bytes([FORMAT_VERSION]) + salt + prefix)
        writer.sync()
        return writer

    @classmethod
    def resume(
        cls, raw: BinaryIO, key: bytes, aad: bytes, total: int, *, cache_key: str | None = None
    ) -> ResumableWriter:
        """Reopen a partial blob: authenticate its sealed segments (unless this process saw
        them sealed), cut a torn tail, rebuild the hash; the writer continues at ``offset``."""
        raw.seek(0)
        header = raw.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE or header[: len(MAGIC)] != MAGIC or header[len(MAGIC)] != FORMAT_VERSION:
            raise CryptoError("not the start of a Coffre blob")
        salt = header[len(MAGIC) + 1 : len(MAGIC) + 1 + SALT_SIZE]
        prefix = header[len(MAGIC) + 1 + SALT_SIZE :]
        writer = cls(raw, key, aad, total, salt, prefix)
        size = os.fstat(raw.fileno()).st_size
        sealed = min((size - HEADER_SIZE) // SEALED_SEGMENT_SIZE, writer._segments)
        cached = _cached(cache_key, sealed)
        if cached is not None and sealed * SEGMENT_SIZE <= total:
            writer._hash = cached
            writer._index = sealed
        else:
            writer._rehash(sealed)
        if writer._index == writer._segments:
            writer._complete = True
        writer.truncate_to_offset()
        return writer

    def _rehash(self, sealed: int) -> None:
        for index in range(sealed):
            last = index == self._segments - 1
            size = (self.total - index * SEGMENT_SIZE if last else SEGMENT_SIZE) + TAG_SIZE
            self._raw.seek(HEADER_SIZE + index * SEALED_SEGMENT_SIZE)
            data = self._raw.read(size)
            nonce, segment_aad = _nonce_and_aad(self._prefix, self._aad, index, last)
            try:
                plaintext = self._aead.decrypt(nonce, data, segment_aad)
            except InvalidTag:
                return  # a torn or foreign tail: the stream goes on from the last good segment
            self._hash.update(plaintext)
            self._index = index + 1

    # ------------------------------------------------------------------ state

    @property
    def offset(self) -> int:
        """Plaintext bytes sealed in the file (what survives this request ending now)."""
        return min(self._index * SEGMENT_SIZE, self.total)

    @property
    def received(self) -> int:
        return self.offset + len(self._buffer)

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def sha256(self) -> str:
        if not self._complete:
            raise CryptoError("the blob is not complete")
        self._drain()
        return self._hash.hexdigest()

    def blob_size(self) -> int:
        full = min(self._index, self._segments)
        if self._complete:
            return HEADER_SIZE + self.total + self._segments * TAG_SIZE
        return HEADER_SIZE + full * SEALED_SEGMENT_SIZE

    # ------------------------------------------------------------------ writing

    def _write_all(self, data: bytes | memoryview) -> None:
        write_fully(self._raw, data)

    def _drain(self) -> None:
        """Wait for the hash of the segment handed to the worker."""
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            hashing.result()

    def _seal(self, data: bytes | bytearray | memoryview) -> None:
        """Seal one segment; ``data`` must not be modified afterwards (it is hashed meanwhile)."""
        last = self._index == self._segments - 1
        nonce, segment_aad = _nonce_and_aad(self._prefix, self._aad, self._index, last)
        size = len(data) + TAG_SIZE
        if len(self._sealed) < size:
            self._sealed = bytearray(size)
        out = memoryview(self._sealed)[:size]
        self._drain()
        self._hashing = _HASHER.submit(self._hash.update, data)
        self._aead.encrypt_into(nonce, data, segment_aad, out)
        self._raw.seek(HEADER_SIZE + self._index * SEALED_SEGMENT_SIZE)
        self._write_all(out)
        self._index += 1
        if last:
            self._drain()
            self._complete = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add plaintext; every segment completed by it is sealed into the file at once."""
        view = memoryview(data).cast("B")
        if self.received + len(view) > self.total:
            raise CryptoError("more data than the declared length")
        # Immutable input can be sealed (and hashed meanwhile) without a copy.
        immutable = isinstance(data, bytes)
        while view:
            last = self._index == self._segments - 1
            segment = self.total - self._index * SEGMENT_SIZE if last else SEGMENT_SIZE
            if immutable and not self._buffer and len(view) >= segment:
                self._seal(view[:segment])
                view = view[segment:]
                continue
            want = segment - len(self._buffer)
            take = min(want, len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == (self.total - self._index * SEGMENT_SIZE if last else SEGMENT_SIZE):
                self._seal(self._buffer)
                self._buffer = bytearray()
        self.finish_empty()

    def finish_empty(self) -> None:
        """An empty stream is complete once its single (empty) segment is sealed."""
        if self.total == 0 and not self._complete:
            self._seal(b"")

    def drop_unsealed(self) -> None:
        """Forget the plaintext of a segment not complete yet (the request ended early)."""
        self._buffer[:] = bytes(len(self._buffer))
        self._buffer = bytearray()

    def truncate_to_offset(self) -> None:
        """Cut the file to what is sealed (a write torn by a crash or a refused request)."""
        self._raw.truncate(self.blob_size())

    def checkpoint(self) -> tuple[int, Any]:
        """The state at a segment boundary, to go back to if the request is refused later."""
        self._drain()
        return self._index, self._hash.copy()

    def restore(self, checkpoint: tuple[int, Any], *, cache_key: str | None = None) -> None:
        """Go back to ``checkpoint`` (a request whose checksum did not match): the file is cut
        there and nothing sealed since is kept."""
        self.drop_unsealed()
        self._drain()
        self._index, digest = checkpoint
        self._hash = digest.copy()
        self._complete = False
        self.truncate_to_offset()
        if cache_key is not None:
            forget(cache_key)

    def sync(self, *, cache_key: str | None = None) -> None:
        """Make what is sealed durable (fsync) and remember the hash for a later request."""
        self._drain()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        if not self._complete:
            _remember(cache_key, self._index, self._hash)
        elif cache_key is not None:
            forget(cache_key)
