"""Segmented AES-256-GCM, in the style of Tink's AES-GCM-HKDF streaming AEAD.

Layout of a blob::

    header  = b"CFR1" || version (1 byte) || salt (32 bytes) || nonce prefix (7 bytes)
    segment = AES-256-GCM(segment key, nonce, plaintext[i], aad || i || last) -> ciphertext || tag

    segment key = HKDF-SHA256(data key, salt, info = b"coffre-blob" || version || aad)
    nonce       = nonce prefix (7) || i (uint32 BE) || last flag (1 byte)

Every segment but the last holds exactly SEGMENT_SIZE plaintext bytes, the last one holds
0..SEGMENT_SIZE bytes (it is empty only for an empty file). Because the segment index and
the last flag are in the nonce and in the AAD, and the number of segments follows from the
blob size, reordering, truncation (even at a segment boundary) and extension all fail
authentication; because the key is derived from the AAD, a blob copied onto another
version, file or organisation fails too. Format 2 binds a blob to its organisation and to
the random 128-bit ``uid`` of its version row (plus the file id when the file already
existed): the blob is written before any row exists, so no database id can be used.
A fresh salt per blob gives a fresh segment key, so nonces never repeat under a key even
if a data key were ever reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal.crypto.errors import CryptoError, IntegrityError

__all__ = [
    "HEADER_SIZE",
    "SEGMENT_SIZE",
    "CryptoError",
    "EncryptingWriter",
    "IntegrityError",
    "associated_data",
    "ciphertext_length",
    "decrypt_stream",
    "plaintext_length",
]

MAGIC = b"CFR1"
FORMAT_VERSION = 2
SALT_SIZE = 32
PREFIX_SIZE = 7
TAG_SIZE = 16
KEY_SIZE = 32
HEADER_SIZE = len(MAGIC) + 1 + SALT_SIZE + PREFIX_SIZE
SEGMENT_SIZE = 1 << 20
SEALED_SEGMENT_SIZE = SEGMENT_SIZE + TAG_SIZE
# The segment index is a uint32 in the nonce: 4 PiB per blob, far beyond any upload limit.
MAX_SEGMENTS = 1 << 32

_INDEX = struct.Struct(">IB")


_UID = re.compile(r"[0-9a-f]{32}")


def associated_data(organization_id: int, version_uid: str, file_id: int | None = None) -> bytes:
    """What a blob is bound to; a blob read under another version, file or organisation fails."""
    for name, value in (("organization_id", organization_id), ("file_id", file_id)):
        if value is None and name == "file_id":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer")
    if not isinstance(version_uid, str) or not _UID.fullmatch(version_uid):
        raise ValueError("version_uid must be 32 lowercase hex digits")
    file_part = "" if file_id is None else f"|file={file_id}"
    return f"coffre/v2|org={organization_id}{file_part}|version={version_uid}".encode()


def _segment_aead(key: bytes, salt: bytes, aad: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise CryptoError("a data key is 32 bytes")
    info = b"coffre-blob" + bytes([FORMAT_VERSION]) + aad
    segment_key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(key)
    return AESGCM(segment_key)


def _nonce_and_aad(prefix: bytes, aad: bytes, index: int, last: bool) -> tuple[bytes, bytes]:
    suffix = _INDEX.pack(index, 1 if last else 0)
    return prefix + suffix, aad + suffix


class EncryptingWriter:
    """Encrypts a stream of plaintext into ``raw`` (header, then sealed segments).

    ``write`` seals a full segment only once more data follows it, so that the last segment
    can always be flagged as last by ``finish``; plaintext is held in memory (one segment at
    most) and never written anywhere else.
    """

    def __init__(self, raw: BinaryIO, key: bytes, aad: bytes) -> None:
        salt = secrets.token_bytes(SALT_SIZE)
        self._prefix = secrets.token_bytes(PREFIX_SIZE)
        self._aead = _segment_aead(key, salt, aad)
        self._aad = aad
        self._raw = raw
        self._buffer = bytearray(SEGMENT_SIZE)
        self._filled = 0
        self._sealed = bytearray(SEALED_SEGMENT_SIZE)
        self._index = 0
        self._hash = hashlib.sha256()
        self._finished = False
        self.plaintext_size = 0
        self._write_all(MAGIC + bytes([FORMAT_VERSION]) + salt + self._prefix)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _seal(self, data: memoryview | bytes, last: bool) -> None:
        if self._index >= MAX_SEGMENTS:
            raise CryptoError("blob too large for one data key")
        nonce, segment_aad = _nonce_and_aad(self._prefix, self._aad, self._index, last)
        out = memoryview(self._sealed)[: len(data) + TAG_SIZE]
        self._aead.encrypt_into(nonce, data, segment_aad, out)
        self._write_all(out)
        self._index += 1

    def _write_all(self, data: memoryview | bytes) -> None:
        # An unbuffered raw file may accept only part of a write.
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            if written is None:
                raise CryptoError("the blob file is non-blocking and not ready")
            view = view[written:]

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._finished:
            raise CryptoError("write after finish")
        view = memoryview(data).cast("B")
        total = len(view)
        self._hash.update(view)
        self.plaintext_size += total
        while view:
            if self._filled == SEGMENT_SIZE:
                # More data follows, so the buffered segment is not the last one.
                self._seal(memoryview(self._buffer), last=False)
                self._filled = 0
            if self._filled == 0 and len(view) > SEGMENT_SIZE:
                # Large writes are sealed straight from the caller's buffer, without a copy.
                self._seal(view[:SEGMENT_SIZE], last=False)
                view = view[SEGMENT_SIZE:]
                continue
            take = min(SEGMENT_SIZE - self._filled, len(view))
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
        return total

    def finish(self) -> None:
        if self._finished:
            return
        self._seal(memoryview(self._buffer)[: self._filled], last=True)
        self._finished = True
        # Do not keep a segment of plaintext around longer than needed.
        self._buffer[:] = bytes(len(self._buffer))
        self._filled = 0


def _segment_count(raw_size: int) -> tuple[int, int]:
    """(number of segments, plaintext size of the last one) for a blob of ``raw_size`` bytes."""
    body = raw_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise IntegrityError("blob too short")
    full, rest = divmod(body, SEALED_SEGMENT_SIZE)
    if rest == 0:
        return full, SEGMENT_SIZE
    if rest < TAG_SIZE:
        raise IntegrityError("blob has a partial segment")
    return full + 1, rest - TAG_SIZE


def plaintext_length(raw_size: int) -> int:
    """The plaintext size of a blob of ``raw_size`` bytes (raises IntegrityError if impossible)."""
    segments, last_size = _segment_count(raw_size)
    return (segments - 1) * SEGMENT_SIZE + last_size


def ciphertext_length(plaintext_size: int) -> int:
    """The blob size for ``plaintext_size`` bytes of plaintext."""
    if plaintext_size < 0:
        raise ValueError("negative size")
    segments = max(1, -(-plaintext_size // SEGMENT_SIZE))
    return HEADER_SIZE + plaintext_size + segments * TAG_SIZE


def _read_exact(raw: BinaryIO, size: int) -> bytes:
    data = raw.read(size)
    if data is None or len(data) != size:
        raise IntegrityError("blob ended early")
    return data


def _raw_size(raw: BinaryIO) -> int:
    try:
        return os.fstat(raw.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        position = raw.tell()
        size = raw.seek(0, os.SEEK_END)
        raw.seek(position)
        return size


def decrypt_stream(raw: BinaryIO, key: bytes, aad: bytes, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Yield the plaintext bytes [start, end) of the blob in ``raw`` (a seekable binary file).

    Each segment is authenticated before any of its bytes is yielded. When the range does
    not reach the end, the last segment is still authenticated first, so that the length
    (and therefore truncation or extension) is verified on every read.
    """
    raw.seek(0)
    header = _read_exact(raw, HEADER_SIZE)
    if header[: len(MAGIC)] != MAGIC:
        raise IntegrityError("not a Coffre blob")
    if header[len(MAGIC)] != FORMAT_VERSION:
        raise IntegrityError("unknown blob format version")
    salt = header[len(MAGIC) + 1 : len(MAGIC) + 1 + SALT_SIZE]
    prefix = header[len(MAGIC) + 1 + SALT_SIZE :]
    segments, last_size = _segment_count(_raw_size(raw))
    if segments > MAX_SEGMENTS:
        raise IntegrityError("blob has too many segments")
    total = (segments - 1) * SEGMENT_SIZE + last_size
    end = total if end is None else end
    if start < 0 or end > total or start > end:
        raise ValueError(f"range [{start}, {end}) outside 0..{total}")
    aead = _segment_aead(key, salt, aad)

    def open_segment(index: int) -> bytes:
        last = index == segments - 1
        raw.seek(HEADER_SIZE + index * SEALED_SEGMENT_SIZE)
        sealed = _read_exact(raw, (last_size if last else SEGMENT_SIZE) + TAG_SIZE)
        nonce, segment_aad = _nonce_and_aad(prefix, aad, index, last)
        try:
            return aead.decrypt(nonce, sealed, segment_aad)
        except InvalidTag:
            raise IntegrityError(f"segment {index} does not authenticate") from None

    if start == end:
        # Nothing to yield, but an empty or out-of-range read must still prove the blob whole.
        open_segment(segments - 1)
        return
    first, final = start // SEGMENT_SIZE, (end - 1) // SEGMENT_SIZE
    if final != segments - 1:
        open_segment(segments - 1)
    for index in range(first, final + 1):
        plaintext = open_segment(index)
        lo = start - index * SEGMENT_SIZE if index == first else 0
        hi = end - index * SEGMENT_SIZE if index == final else len(plaintext)
        yield plaintext if (lo == 0 and hi == len(plaintext)) else plaintext[lo:hi]
