"""Throughput of the blob encryption against a plain copy of the same bytes.

    .venv/bin/python bench/crypto_bench.py [--mib 256] [--chunk-kib 64]

Encryption reads the plaintext in upload-sized chunks and writes sealed segments to a
sink; decryption yields the plaintext of the whole blob and discards it. The baselines do
the same reads and writes without crypto. Target: both ratios at least 0.8.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.crypto.streaming import SEGMENT_SIZE, EncryptingWriter, associated_data, decrypt_stream


class Discard(io.RawIOBase):
    """A sink that accepts bytes like a file and keeps nothing (counts them)."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = len(data)
        self.count += size
        return size


def timed(label: str, size: int, run) -> float:
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    rate = size / (1 << 20) / elapsed
    print(f"{label:<34} {elapsed:7.3f} s  {rate:9.1f} MiB/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--chunk-kib", type=int, default=64)
    args = parser.parse_args()
    size, chunk = args.mib << 20, args.chunk_kib << 10
    plaintext = os.urandom(size)
    key, aad = os.urandom(32), associated_data(1, "1" * 32, 1)
    print(f"{args.mib} MiB, chunks of {args.chunk_kib} KiB, segments of {SEGMENT_SIZE >> 10} KiB")

    def copy_baseline() -> None:
        source, sink = io.BytesIO(plaintext), Discard()
        while block := source.read(chunk):
            sink.write(block)

    def copy_and_hash_baseline() -> None:
        source, sink, digest = io.BytesIO(plaintext), Discard(), hashlib.sha256()
        while block := source.read(chunk):
            digest.update(block)
            sink.write(block)

    def encrypt_into(sink) -> None:
        source = io.BytesIO(plaintext)
        writer = EncryptingWriter(sink, key, aad)
        while block := source.read(chunk):
            writer.write(block)
        writer.finish()

    def encrypt() -> None:
        encrypt_into(Discard())

    blob = io.BytesIO()
    encrypt_into(blob)

    def read_baseline() -> None:
        source = io.BytesIO(blob.getvalue())
        while source.read(SEGMENT_SIZE):
            pass

    def decrypt() -> None:
        for _part in decrypt_stream(blob, key, aad):
            pass

    copy = timed("baseline: copy", size, copy_baseline)
    copy_hash = timed("baseline: copy + sha256", size, copy_and_hash_baseline)
    enc = timed("encrypt (AES-256-GCM + sha256)", size, encrypt)
    read = timed("baseline: read and discard", size, read_baseline)
    dec = timed("decrypt (verify every segment)", size, decrypt)
    print(f"encrypt / copy          = {enc / copy:5.2f}")
    print(f"encrypt / copy+sha256   = {enc / copy_hash:5.2f}  (the sha256 is part of the contract)")
    print(f"decrypt / read          = {dec / read:5.2f}")
    print("(in-memory copies run at memcpy speed; against disk or network the crypto is not the bottleneck)")


if __name__ == "__main__":
    main()
