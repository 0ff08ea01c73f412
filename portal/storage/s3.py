"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Scaleway, OVH) through boto3.

Writes stream: the encrypted segments fill one part buffer at a time (8–64 MiB,
COFFRE_S3_PART_MB) and full parts go up on a few threads while the next fills, so memory
stays at a handful of parts whatever the file size and nothing touches the local disk. A
blob smaller than a part is one PUT. Every part carries ``x-amz-checksum-sha256``, checked
by the store. Any failure aborts the multipart upload, so no orphan part is billed or kept;
an abort the store cannot receive is recorded (``abandoned.py``) and retried by the sweep;
``sweep_temp`` aborts the uploads a killed process left.

Reads are ranged GETs of one part-sized window with the next one fetched ahead; the
decryptor seeks (the last segment is authenticated first), which costs one more GET.
Deletes remove every version and delete marker of the key, so a versioned bucket keeps
nothing. Keys are ``<COFFRE_S3_PREFIX><128-bit hex>``: opaque.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import queue
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flask import Flask

from portal.storage.base import (
    KEY_PATTERN,
    PendingBlob,
    StorageUnavailableError,
    check_key,
)

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART = 8 * MIB
MAX_PART = 64 * MIB
# Parts being sent while the next fills: bounds memory at (IN_FLIGHT + 1) parts.
IN_FLIGHT = 4
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def s3_client(endpoint_url: str | None = None, *, checksummed_writes: bool = False) -> Any:
    """A boto3 S3 client (credentials and region from the usual AWS variables) with bounded
    timeouts and retries, so an unreachable store fails a request instead of hanging it.
    Shared by the blob store and the backup repository (portal/backups/s3.py).

    ``checksummed_writes``: every write of this client carries ``x-amz-checksum-sha256``
    (a signed header the store verifies), so the SigV4 payload hash, a second SHA-256 pass
    over every part that botocore makes only over plain http, is left out, as botocore
    already does over https."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=2 * IN_FLIGHT + 4,
        s3={"payload_signing_enabled": False} if checksummed_writes else None,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def _unavailable(error: Exception) -> StorageUnavailableError:
    unavailable = StorageUnavailableError(f"object store unavailable: {type(error).__name__}")
    unavailable.__cause__ = error
    return unavailable


def _is_missing(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in MISSING_CODES


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """botocore errors as the store's errors: absent → FileNotFoundError, else unavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        if _is_missing(error):
            raise FileNotFoundError("blob not found in the bucket") from error
        raise _unavailable(error) from error


def _sha256_b64(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class _SeekableReader(io.RawIOBase):
    """Read-only, seekable over ``_size`` bytes; subclasses implement the reading."""

    _size = 0
    _position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position


class _PartBody(_SeekableReader):
    """A part as a file over its buffer, never copied whole.

    The buffer itself as the body (a bytearray) went out in one ``sendall`` bounded by the
    5 s connect timeout: over a link slower than about 1.6 MiB/s every part failed
    (tests/storage/test_slow_store.py); ``bytes`` would cost a copy per part. A file is
    sent in blocks, each with its own timeout, and botocore seeks back to retry.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._size = len(view)
        self._position = 0

    def __len__(self) -> int:
        return self._size

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._size - self._position))
        buffer[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count


class _MultipartWriter(io.RawIOBase):
    """A write-only file whose bytes go to one object, part by part.

    Parts are filled in place in at most IN_FLIGHT + 1 part-sized buffers, reused: a
    buffer goes back to the free list when its part has landed, and the writer waits for
    one when all are busy (the back-pressure on the encryptor). No part is copied whole on
    its way to botocore (``_PartBody``), and no 8 MiB block is freed and allocated again per part, which
    under glibc's malloc grew the heap instead of reusing it.
    """

    def __init__(self, store: S3BlobStore, name: str) -> None:
        super().__init__()
        self._store = store
        self._name = name
        # The first buffer grows as bytes come, so a small blob never takes a whole part.
        self._buffer: bytearray | None = bytearray()
        self._fill = 0
        self._allocated = 1
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._upload_id: str | None = None
        self._parts: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = self._store.part_size
        written = 0
        while written < len(view):
            if self._buffer is None:
                self._buffer = self._take_buffer(size)
            count = min(size - self._fill, len(view) - written)
            # In place in a reused buffer; at the end (growing it) in the first one.
            self._buffer[self._fill : self._fill + count] = view[written : written + count]
            self._fill += count
            written += count
            if self._fill == size:
                buffer, self._buffer, self._fill = self._buffer, None, 0
                self._send(buffer, size)
        return written

    def _take_buffer(self, size: int) -> bytearray:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        if self._allocated < IN_FLIGHT + 1:
            self._allocated += 1
            return bytearray(size)
        return self._free.get()  # every buffer is on the wire: wait for a part to land

    def _send(self, buffer: bytearray, length: int) -> None:
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            with _translated():
                created = client.create_multipart_upload(Bucket=bucket, Key=self._name, ChecksumAlgorithm="SHA256")
            self._upload_id = created["UploadId"]
            self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="coffre-s3-part")
        for done in self._parts:
            if done.done() and done.exception() is not None:
                self._free.put(buffer)
                self._raise(done.exception())
        number = len(self._parts) + 1
        assert self._pool is not None
        self._parts.append(self._pool.submit(self._upload_part, number, buffer, length))

    def _upload_part(self, number: int, buffer: bytearray, length: int) -> dict[str, Any]:
        try:
            view = memoryview(buffer)[:length]
            checksum = _sha256_b64(view)
            answer = self._store.client.upload_part(
                Bucket=self._store.bucket,
                Key=self._name,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=_PartBody(view),
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
        finally:
            self._free.put(buffer)

    @staticmethod
    def _raise(error: BaseException | None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, BotoCoreError | ClientError):
            raise _unavailable(error) from error
        if error is not None:
            raise error

    def finish(self) -> None:
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            body = self._buffer or b""  # the first, growing buffer: exactly the blob
            with _translated():
                client.put_object(
                    Bucket=bucket,
                    Key=self._name,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_sha256_b64(body),
                )
            return
        if self._buffer is not None and self._fill:
            buffer, length = self._buffer, self._fill
            self._buffer, self._fill = None, 0
            self._send(buffer, length)
        parts = []
        for future in self._parts:
            error = future.exception()
            if error is not None:
                self._raise(error)
            parts.append(future.result())
        with _translated():
            client.complete_multipart_upload(
                Bucket=bucket, Key=self._name, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )
        self._shutdown()

    def abort(self) -> None:
        """Drop the parts sent so far (after the ones on the wire have landed)."""
        self._buffer, self._fill = None, 0
        if self._upload_id is None:
            return
        self._shutdown()
        try:
            self._store.client.abort_multipart_upload(
                Bucket=self._store.bucket, Key=self._name, UploadId=self._upload_id
            )
        except Exception:
            logger.warning("could not abort multipart upload %s; recorded for the sweep", self._upload_id)
            if self._store.on_abort_failed is not None:
                self._store.on_abort_failed(self._store.bucket, self._name, self._upload_id)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class _RangeReader(_SeekableReader):
    """A seekable read-only view of one object, read in part-sized ranged GETs."""

    def __init__(self, store: S3BlobStore, name: str, size: int) -> None:
        super().__init__()
        self._store = store
        self._name = name
        self._size = size
        self._position = 0
        self._window_start = 0
        self._window = b""
        self._ahead: Future | None = None
        self._ahead_start = -1
        self._pool: ThreadPoolExecutor | None = None

    def _get(self, start: int) -> bytes:
        end = min(self._size, start + self._store.part_size) - 1
        with _translated():
            answer = self._store.client.get_object(
                Bucket=self._store.bucket, Key=self._name, Range=f"bytes={start}-{end}"
            )
            return answer["Body"].read()

    def _load(self, start: int) -> None:
        if self._ahead is not None and self._ahead_start == start:
            future, self._ahead = self._ahead, None
            try:
                self._window = future.result()
            except Exception as error:
                with _translated():
                    raise error from None
        else:
            self._window = self._get(start)
        self._window_start = start
        following = start + len(self._window)
        if following < self._size and self._window:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="coffre-s3-read")
            self._ahead = self._pool.submit(self._get, following)
            self._ahead_start = following

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._position
        offset = self._position - self._window_start
        if offset >= 0 and offset + size <= len(self._window):
            # Within the window (the decryptor's segment reads, mostly): one slice, no join.
            piece = self._window[offset : offset + size]
            self._position += len(piece)
            return piece
        out = bytearray()
        while size > 0 and self._position < self._size:
            offset = self._position - self._window_start
            if not 0 <= offset < len(self._window):
                self._load(self._position)
                offset = 0
                if not self._window:
                    break
            piece = self._window[offset : offset + size]
            out += piece
            self._position += len(piece)
            size -= len(piece)
        return bytes(out)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._window = b""
        super().close()


class S3BlobStore:
    name = "s3"

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "blobs/",
        part_size: int = MIN_PART,
        on_abort_failed: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = max(MIN_PART, min(MAX_PART, part_size))
        # Called with (bucket, object key, upload id) when an abort cannot reach the store.
        self.on_abort_failed = on_abort_failed

    def _name(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)}"

    @contextlib.contextmanager
    def create(self, key: str | None = None) -> Iterator[PendingBlob]:
        # An explicit key only when a blob moves between stores (storage migrate).
        key = secrets.token_hex(16) if key is None else check_key(key)
        writer = _MultipartWriter(self, self._name(key))
        pending = PendingBlob(file=writer)  # type: ignore[arg-type]
        try:
            yield pending
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        pending.key = key

    def _head(self, key: str) -> dict[str, Any]:
        with _translated():
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))

    def open(self, key: str) -> _RangeReader:
        head = self._head(key)
        return _RangeReader(self, self._name(key), int(head["ContentLength"]))

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def modified_at(self, key: str) -> float:
        return self._head(key)["LastModified"].timestamp()

    def delete(self, key: str) -> None:
        name = self._name(key)
        with _translated():
            try:
                listed = self.client.list_object_versions(Bucket=self.bucket, Prefix=name)
            except Exception as error:
                if _is_missing(error):
                    return
                # A store without versioning support: one plain delete is all there is.
                self.client.delete_object(Bucket=self.bucket, Key=name)
                return
            targets = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
                if item["Key"] == name
            ]
            if not targets:
                self.client.delete_object(Bucket=self.bucket, Key=name)
                return
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": targets, "Quiet": True})
            if answer.get("Errors"):
                raise StorageUnavailableError(f"could not delete every version of a blob: {answer['Errors'][0]}")

    def iter_keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with _translated():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if KEY_PATTERN.fullmatch(key):
                        yield key

    def abort_unfinished(self, key: str) -> int:
        name = self._name(key)
        aborted = 0
        with _translated():
            listed = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=name)
            for upload in listed.get("Uploads", []):
                if upload["Key"] == name:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def sweep_temp(self, older_than_seconds: int = 3600, now: float | None = None) -> int:
        """Abort multipart uploads started more than ``older_than_seconds`` ago."""
        now = time.time() if now is None else now
        removed = 0
        with _translated():
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    if now - upload["Initiated"].timestamp() >= older_than_seconds:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
        return removed

    def pending_uploads(self) -> int:
        """Multipart uploads not completed nor aborted (a fault test expects none)."""
        with _translated():
            return len(self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix).get("Uploads", []))

    def ping(self) -> None:
        with _translated():
            self.client.head_bucket(Bucket=self.bucket)


def get_s3_store(app: Flask) -> S3BlobStore:
    bucket = app.config.get("COFFRE_S3_BUCKET")
    if not bucket:
        raise StorageUnavailableError("COFFRE_STORAGE=s3 needs COFFRE_S3_BUCKET")
    endpoint = app.config.get("COFFRE_S3_ENDPOINT_URL")
    prefix = app.config.get("COFFRE_S3_PREFIX") or ""
    part_size = int(app.config.get("COFFRE_S3_PART_MB") or 8) * MIB
    identity = (bucket, endpoint, prefix, part_size)
    cached = app.extensions.get("coffre_s3_blob_store")
    if cached is None or cached[0] != identity:
        from portal.storage import abandoned

        client = s3_client(endpoint, checksummed_writes=True)
        store = S3BlobStore(client, bucket, prefix, part_size, abandoned.recorder(app))
        cached = (identity, store)
        app.extensions["coffre_s3_blob_store"] = cached
    return cached[1]
