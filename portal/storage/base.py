"""What every blob store offers (``COFFRE_STORAGE=local|s3``) and the errors it raises.

A blob is named by a random 128-bit hex key the store chooses: no file name, no
organisation name ever reaches the store. Blobs hold ciphertext only (the segmented
AES-256-GCM format of ``portal/crypto/streaming.py``); nothing here decrypts.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

KEY_PATTERN = re.compile(r"[0-9a-f]{32}")
BACKENDS = ("local", "s3")


class InvalidBlobKeyError(ValueError):
    """A blob key that is not one this store could have produced."""


class StorageFullError(OSError):
    """The blob could not be written for lack of space: the caller answers 507, nothing is kept."""


class StorageUnavailableError(OSError):
    """The store did not answer (network, credentials, bucket gone): the caller answers 503."""


@dataclass
class PendingBlob:
    file: BinaryIO
    key: str | None = None
    _temp_path: Path | None = field(default=None, repr=False)


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidBlobKeyError("invalid blob key")
    return key


class BlobStoreProtocol(Protocol):
    name: str

    def create(self, key: str | None = None) -> contextlib.AbstractContextManager[PendingBlob]:
        """Write a new blob through ``pending.file``; ``pending.key`` is set once it is durable.
        An exception inside the block leaves nothing behind (no temp file, no multipart part)."""

    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader; FileNotFoundError when the blob is absent."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def modified_at(self, key: str) -> float:
        """POSIX time of the blob's last write; FileNotFoundError when absent."""

    def delete(self, key: str) -> None:
        """Remove the blob for good (every version on a versioned bucket); absent is fine."""

    def iter_keys(self) -> Iterator[str]: ...

    def abort_unfinished(self, key: str) -> int:
        """Drop what an interrupted write of this very key left (``storage migrate`` reruns)."""

    def sweep_temp(self, older_than_seconds: int = 3600, now: float | None = None) -> int:
        """Remove what crashed writes left (temp files, unfinished multipart uploads)."""

    def ping(self) -> None:
        """Raise StorageUnavailableError (or OSError) when the store cannot be used."""
