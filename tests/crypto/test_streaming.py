"""The blob format: round trips, ranges, and every way a blob can be tampered with."""

from __future__ import annotations

import io
import os

import pytest

from portal.crypto.streaming import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    TAG_SIZE,
    EncryptingWriter,
    IntegrityError,
    associated_data,
    ciphertext_length,
    decrypt_stream,
    plaintext_length,
)

SEALED = SEGMENT_SIZE + TAG_SIZE
KEY = bytes(range(32))
UID_A, UID_B = "a" * 32, "b" * 32
AAD = associated_data(1, UID_A, 2)


def encrypt(data: bytes, key: bytes = KEY, aad: bytes = AAD, chunk: int | None = None) -> bytes:
    raw = io.BytesIO()
    writer = EncryptingWriter(raw, key, aad)
    step = chunk or max(1, len(data))
    for offset in range(0, len(data), step):
        writer.write(data[offset : offset + step])
    writer.finish()
    return raw.getvalue()


def decrypt(blob: bytes, key: bytes = KEY, aad: bytes = AAD, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(blob), key, aad, start, end))


@pytest.fixture(scope="module")
def three_segments() -> tuple[bytes, bytes]:
    data = os.urandom(2 * SEGMENT_SIZE + 12345)
    return data, encrypt(data)


@pytest.mark.parametrize(
    "size", [0, 1, 4096, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 2 * SEGMENT_SIZE, 2 * SEGMENT_SIZE + 7]
)
def test_round_trip_sizes(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data, chunk=65536 + 3)
    assert len(blob) == ciphertext_length(size)
    assert plaintext_length(len(blob)) == size
    assert decrypt(blob) == data


def test_writer_reports_size_and_sha256() -> None:
    import hashlib

    data = os.urandom(SEGMENT_SIZE + 99)
    raw = io.BytesIO()
    writer = EncryptingWriter(raw, KEY, AAD)
    writer.write(memoryview(data)[:10])
    writer.write(bytearray(data[10:]))
    writer.finish()
    assert writer.plaintext_size == len(data)
    assert writer.sha256 == hashlib.sha256(data).hexdigest()


def test_same_plaintext_encrypts_differently() -> None:
    data = b"Contrat de travail - Awa Diallo" * 100
    first, second = encrypt(data), encrypt(data)
    assert first != second
    assert data[:32] not in first and data[:32] not in second


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (5, 100), (SEGMENT_SIZE - 3, SEGMENT_SIZE + 3), (SEGMENT_SIZE, 2 * SEGMENT_SIZE), (0, None), (7, 7)],
)
def test_ranges(three_segments: tuple[bytes, bytes], start: int, end: int | None) -> None:
    data, blob = three_segments
    assert decrypt(blob, start=start, end=end) == data[start:end]


def test_range_outside_the_file_is_refused(three_segments: tuple[bytes, bytes]) -> None:
    data, blob = three_segments
    with pytest.raises(ValueError):
        decrypt(blob, start=0, end=len(data) + 1)
    with pytest.raises(ValueError):
        decrypt(blob, start=10, end=5)


@pytest.mark.parametrize("position", [0, 4, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + SEALED + 17, -1])
def test_a_flipped_bit_anywhere_is_detected(three_segments: tuple[bytes, bytes], position: int) -> None:
    _data, blob = three_segments
    tampered = bytearray(blob)
    tampered[position] ^= 0x01
    with pytest.raises(IntegrityError):
        decrypt(bytes(tampered))


def test_tampering_is_detected_before_any_byte_of_the_segment() -> None:
    data = os.urandom(2 * SEGMENT_SIZE + 10)
    tampered = bytearray(encrypt(data))
    tampered[HEADER_SIZE + SEALED + 5] ^= 0xFF  # inside segment 1
    stream = decrypt_stream(io.BytesIO(bytes(tampered)), KEY, AAD)
    assert next(stream) == data[:SEGMENT_SIZE]
    with pytest.raises(IntegrityError):
        next(stream)


def test_truncation_at_a_segment_boundary_is_detected(three_segments: tuple[bytes, bytes]) -> None:
    _data, blob = three_segments
    truncated = blob[: HEADER_SIZE + 2 * SEALED]
    with pytest.raises(IntegrityError):
        decrypt(truncated)
    # Even a range that only covers intact segments proves the length first.
    with pytest.raises(IntegrityError):
        decrypt(truncated, start=0, end=10)


@pytest.mark.parametrize("cut", [1, TAG_SIZE, TAG_SIZE + 1, 1000])
def test_truncation_inside_a_segment_is_detected(three_segments: tuple[bytes, bytes], cut: int) -> None:
    _data, blob = three_segments
    with pytest.raises(IntegrityError):
        decrypt(blob[:-cut])


def test_header_only_or_empty_blob_is_detected() -> None:
    blob = encrypt(b"")
    with pytest.raises(IntegrityError):
        decrypt(blob[:HEADER_SIZE])
    with pytest.raises(IntegrityError):
        decrypt(b"")


@pytest.mark.parametrize(
    "extra",
    [b"\x00", bytes(range(TAG_SIZE)), bytes(i % 251 for i in range(SEALED))],
    ids=["one-byte", "one-tag", "one-segment"],
)
def test_extension_is_detected(three_segments: tuple[bytes, bytes], extra: bytes) -> None:
    _data, blob = three_segments
    with pytest.raises(IntegrityError):
        decrypt(blob + extra)


def test_appending_a_copy_of_a_valid_segment_is_detected() -> None:
    data = os.urandom(2 * SEGMENT_SIZE)  # two full segments, the second flagged last
    blob = encrypt(data)
    first_segment = blob[HEADER_SIZE : HEADER_SIZE + SEALED]
    with pytest.raises(IntegrityError):
        decrypt(blob + first_segment)


def test_reordered_segments_are_detected() -> None:
    data = os.urandom(3 * SEGMENT_SIZE)
    blob = encrypt(data)
    header, segments = (
        blob[:HEADER_SIZE],
        [blob[HEADER_SIZE + i * SEALED : HEADER_SIZE + (i + 1) * SEALED] for i in range(3)],
    )
    with pytest.raises(IntegrityError):
        decrypt(header + segments[1] + segments[0] + segments[2])
    with pytest.raises(IntegrityError):
        decrypt(header + segments[0] + segments[2] + segments[1])


def test_segment_spliced_from_another_blob_under_the_same_key_is_detected() -> None:
    first = encrypt(os.urandom(2 * SEGMENT_SIZE + 5))
    second = encrypt(os.urandom(2 * SEGMENT_SIZE + 5))
    spliced = first[: HEADER_SIZE + SEALED] + second[HEADER_SIZE + SEALED :]
    with pytest.raises(IntegrityError):
        decrypt(spliced)


def test_blob_swapped_to_another_file_or_version_is_detected() -> None:
    blob = encrypt(b"bulletin de paie")
    others = (
        associated_data(1, UID_B, 2),  # another version of the same file
        associated_data(1, UID_A, 3),  # another file
        associated_data(2, UID_A, 2),  # another organisation
        associated_data(1, UID_A),  # the same version uid without its file
    )
    for other in others:
        with pytest.raises(IntegrityError):
            decrypt(blob, aad=other)


def test_wrong_key_is_detected() -> None:
    blob = encrypt(b"releve bancaire")
    with pytest.raises(IntegrityError):
        decrypt(blob, key=bytes(32))


def test_associated_data_rejects_bad_ids() -> None:
    assert associated_data(1, UID_A, 2) == b"coffre/v2|org=1|file=2|version=" + UID_A.encode()
    assert associated_data(1, UID_A) == b"coffre/v2|org=1|version=" + UID_A.encode()
    for bad in ((0, UID_A, 1), (1, UID_A, -1), (1, UID_A, True), (1, 7, 1), (1, "A" * 32, 1), (1, "a" * 31, None)):
        with pytest.raises(ValueError):
            associated_data(*bad)  # type: ignore[arg-type]


def test_impossible_sizes() -> None:
    with pytest.raises(IntegrityError):
        plaintext_length(HEADER_SIZE + 5)
    with pytest.raises(IntegrityError):
        plaintext_length(HEADER_SIZE + SEALED + 3)
    assert plaintext_length(HEADER_SIZE + TAG_SIZE) == 0


def test_short_writes_of_a_raw_file_are_completed() -> None:
    class Trickle(io.RawIOBase):
        """A raw file that accepts at most 1000 bytes per write, as unbuffered files may."""

        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk) -> int:
            taken = bytes(chunk[:1000])
            self.data.extend(taken)
            return len(taken)

    data = os.urandom(SEGMENT_SIZE + 5000)
    sink = Trickle()
    writer = EncryptingWriter(sink, KEY, AAD)
    writer.write(data)
    writer.finish()
    assert decrypt(bytes(sink.data)) == data
