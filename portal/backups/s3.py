"""The backup repository in an S3-compatible bucket (boto3), same layout as on disk.

Objects are hashed while they are staged in the local directory's tmp/, then uploaded
only when the bucket lacks them. S3 writes are atomic per key, so a manifest exists whole
or not at all. Reusing an object copies it onto itself, which refreshes LastModified:
garbage collection then spares what a backup still being written reuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from portal.backups.repository import COPY_CHUNK, HASH_PATTERN, UID_PATTERN, ManifestError, Repository, canonical


class S3Repository(Repository):
    def __init__(self, staging: Path | str, bucket: str, endpoint_url: str | None = None) -> None:
        from portal.storage.s3 import s3_client

        self.root = Path(staging)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._local = threading.local()  # S3 uploads are durable once they return
        self.bucket = bucket
        self.client = s3_client(endpoint_url)

    # ------------------------------------------------------------------ names

    @staticmethod
    def _object_name(digest: str) -> str:
        if not isinstance(digest, str) or not HASH_PATTERN.fullmatch(digest):
            raise ValueError("invalid object name")
        return f"objects/{digest[:2]}/{digest[2:4]}/{digest}"

    @staticmethod
    def _key_name(organization_id: int, uid: str) -> str:
        if not isinstance(uid, str) or not UID_PATTERN.fullmatch(uid):
            raise ValueError("invalid key uid")
        return f"keys/{int(organization_id)}/{uid}.json"

    def object_path(self, digest: str) -> Path:
        raise NotImplementedError("objects live in the bucket")

    def _exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _touch_name(self, name: str) -> bool:
        if not self._exists(name):
            return False
        self.client.copy_object(
            Bucket=self.bucket,
            Key=name,
            CopySource={"Bucket": self.bucket, "Key": name},
            MetadataDirective="REPLACE",
            Metadata={"touched": secrets.token_hex(4)},
        )
        return True

    # ------------------------------------------------------------------ objects

    local = False

    # One object an S3 key: a bucket has no file creation to save (no packs), and no lock.
    def batch(self) -> None:  # type: ignore[override]
        return None

    def running(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def exclusive(self) -> contextlib.AbstractContextManager[bool]:
        return contextlib.nullcontext(True)

    def collect_packs(self, referenced: set[str], cutoff: float) -> dict[str, int]:
        return {}

    def put_object(
        self, source: BinaryIO, *, sync: bool = True, pending: None = None, digest: str | None = None
    ) -> tuple[str, int, int]:
        temp = self.tmp / f"{secrets.token_hex(16)}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(temp, "wb") as out:
                while chunk := source.read(COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            name = digest.hexdigest()
            if self._touch_name(self._object_name(name)):
                return name, size, 0
            self.client.upload_file(str(temp), self.bucket, self._object_name(name))
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return name, size, size

    def object_exists(self, digest: str) -> bool:
        return self._exists(self._object_name(digest))

    def has_object(self, digest: str) -> bool:
        return self._touch_name(self._object_name(digest))

    def open_object(self, digest: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        handle = tempfile.TemporaryFile(dir=self.tmp)  # noqa: SIM115 - returned to the caller
        try:
            self.client.download_fileobj(self.bucket, self._object_name(digest), handle)
        except ClientError as error:
            handle.close()
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(digest) from None
            raise
        handle.seek(0)
        return handle  # type: ignore[return-value]

    def delete_object(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object_name(digest))

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def iter_objects(self) -> Iterator[tuple[str, float]]:
        for item in self._list("objects/"):
            name = item["Key"].rsplit("/", 1)[-1]
            if HASH_PATTERN.fullmatch(name):
                yield name, item["LastModified"].timestamp()

    # ------------------------------------------------------------------ keys

    def put_key(self, organization_id: int, uid: str, record: dict[str, Any], *, sync: bool = True) -> int:
        name = self._key_name(organization_id, uid)
        if self._touch_name(name):
            return 0
        payload = canonical(record)
        self.client.put_object(Bucket=self.bucket, Key=name, Body=payload)
        return len(payload)

    def read_key(self, organization_id: int, uid: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key_name(organization_id, uid))["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return json.loads(body.read())

    def delete_key(self, organization_id: int, uid: str) -> bool:
        name = self._key_name(organization_id, uid)
        if not self._exists(name):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=name)
        return True

    def iter_keys(self) -> Iterator[tuple[str, str, float]]:
        for item in self._list("keys/"):
            parts = item["Key"].split("/")
            if len(parts) == 3 and parts[2].endswith(".json"):
                yield parts[1], parts[2][:-5], item["LastModified"].timestamp()

    # ------------------------------------------------------------------ manifests

    def _store_manifest(self, organization_id: int, backup_id: int, payload: bytes) -> str:
        name = f"manifests/{int(organization_id)}/{int(backup_id)}.json"
        self.client.put_object(Bucket=self.bucket, Key=name, Body=payload)
        return name

    def _manifest_bytes(self, relative_path: str) -> bytes:
        from botocore.exceptions import ClientError

        if not relative_path.startswith("manifests/") or ".." in relative_path.split("/"):
            raise ManifestError("the manifest path leaves the backup repository")
        try:
            return self.client.get_object(Bucket=self.bucket, Key=relative_path)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(relative_path) from None
            raise

    def delete_manifest(self, relative_path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=relative_path)

    def iter_manifests(self) -> Iterator[str]:
        for item in self._list("manifests/"):
            if item["Key"].endswith(".json"):
                yield item["Key"]


__all__ = ["S3Repository"]
