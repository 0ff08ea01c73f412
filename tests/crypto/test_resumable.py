"""The resumable writer: a blob sealed across cuts decrypts to the stream, with its hash."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from portal.crypto import resumable
from portal.crypto.errors import CryptoError
from portal.crypto.streaming import HEADER_SIZE, SEGMENT_SIZE, associated_data, ciphertext_length, decrypt_stream

KEY = bytes(range(32))
AAD = associated_data(1, "ab" * 16)


@pytest.mark.parametrize("total", [0, 1, SEGMENT_SIZE, 3 * SEGMENT_SIZE + 5])
def test_cut_and_resumed_many_times(tmp_path, total):
    rng = random.Random(total)
    data = os.urandom(total)
    path = tmp_path / "blob.part"
    with open(path, "w+b") as raw:
        resumable.ResumableWriter.create(raw, KEY, AAD, total)
    offset = 0
    for attempt in range(50):
        with open(path, "r+b") as raw:
            # Without the cache every other time: the hash is then rebuilt from the file.
            writer = resumable.ResumableWriter.resume(raw, KEY, AAD, total, cache_key="u" if attempt % 2 else None)
            assert writer.offset == offset
            if writer.complete:
                break
            cut = total if attempt == 20 else rng.randint(offset, total)
            writer.write(data[offset:cut])
            if cut == total:
                writer.finish_empty()
                writer.sync()
                assert writer.complete and writer.sha256 == hashlib.sha256(data).hexdigest()
                break
            writer.drop_unsealed()
            writer.sync(cache_key="u")
            assert writer.offset == cut - cut % SEGMENT_SIZE
            offset = writer.offset
    assert os.path.getsize(path) == ciphertext_length(total)
    with open(path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == data


def test_torn_tail_is_cut_and_restore_goes_back(tmp_path):
    total = 4 * SEGMENT_SIZE
    data = os.urandom(total)
    path = tmp_path / "blob.part"
    with open(path, "w+b") as raw:
        writer = resumable.ResumableWriter.create(raw, KEY, AAD, total)
        writer.write(data[: 2 * SEGMENT_SIZE])
        checkpoint = writer.checkpoint()
        writer.write(data[2 * SEGMENT_SIZE : 3 * SEGMENT_SIZE])
        writer.restore(checkpoint)
        assert writer.offset == 2 * SEGMENT_SIZE
        writer.sync()
    # A crash tore the next segment: garbage past the boundary.
    with open(path, "ab") as raw:
        raw.write(os.urandom(SEGMENT_SIZE + 16))
    with open(path, "r+b") as raw:
        writer = resumable.ResumableWriter.resume(raw, KEY, AAD, total)
        assert writer.offset == 2 * SEGMENT_SIZE
        assert os.path.getsize(path) == HEADER_SIZE + 2 * (SEGMENT_SIZE + 16)
        with pytest.raises(CryptoError):
            writer.write(data[: 3 * SEGMENT_SIZE])  # more than the declared length
        writer.write(data[2 * SEGMENT_SIZE :])
        writer.sync()
        assert writer.sha256 == hashlib.sha256(data).hexdigest()
    with open(path, "rb") as raw:
        assert b"".join(decrypt_stream(raw, KEY, AAD)) == data


def test_another_key_authenticates_nothing(tmp_path):
    path = tmp_path / "blob.part"
    data = os.urandom(2 * SEGMENT_SIZE + 1)
    with open(path, "w+b") as raw:
        writer = resumable.ResumableWriter.create(raw, KEY, AAD, len(data))
        writer.write(data[: 2 * SEGMENT_SIZE])
        writer.sync()
    with open(path, "r+b") as raw:
        writer = resumable.ResumableWriter.resume(raw, bytes(32), AAD, len(data))
        assert writer.offset == 0
