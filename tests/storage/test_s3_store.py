"""The S3 blob store against moto's server: multipart streaming, checksums, ranges, aborts,
deletes of every version, and the documents services going through it."""

from __future__ import annotations

import hashlib
import os

import pytest

from portal.audit.context import Actor
from portal.storage.base import InvalidBlobKeyError
from portal.storage.blobs import get_blob_store
from portal.storage.s3 import MIB, S3BlobStore, s3_client

PART = 8 * MIB


def _store(bucket, endpoint) -> S3BlobStore:
    _client, name = bucket
    return S3BlobStore(s3_client(endpoint), name, "blobs/", PART)


def test_multipart_write_ranges_checksums_and_versioned_delete(bucket, s3_endpoint):
    client, name = bucket
    store = _store(bucket, s3_endpoint)
    payload = os.urandom(2 * PART + 12345)  # three parts, the last one short
    with store.create() as pending:
        for start in range(0, len(payload), 1 << 20):
            pending.file.write(payload[start : start + (1 << 20)])
    key = pending.key
    assert key is not None and store.exists(key) and store.size(key) == len(payload)
    # The object name is the opaque key under the prefix, nothing else.
    assert [item["Key"] for item in client.list_objects_v2(Bucket=name)["Contents"]] == [f"blobs/{key}"]
    head = client.head_object(Bucket=name, Key=f"blobs/{key}", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(payload)
    assert "ChecksumSHA256" in head  # the store checked the parts' sha256
    assert list(store.iter_keys()) == [key]

    with store.open(key) as raw:
        assert raw.seek(0, os.SEEK_END) == len(payload)
        raw.seek(PART - 10)
        assert raw.read(20) == payload[PART - 10 : PART + 10]  # across a window boundary
        raw.seek(0)
        assert hashlib.sha256(raw.read()).digest() == hashlib.sha256(payload).digest()

    # Overwrite once so the versioned bucket holds two versions, then delete: nothing stays.
    with store.create(key) as pending:
        pending.file.write(b"second version")
    assert len(client.list_object_versions(Bucket=name, Prefix=f"blobs/{key}")["Versions"]) == 2
    store.delete(key)
    listed = client.list_object_versions(Bucket=name, Prefix=f"blobs/{key}")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.open(key)
    store.delete(key)  # absent is fine


def test_failure_mid_stream_aborts_the_multipart_upload(bucket, s3_endpoint):
    client, name = bucket
    store = _store(bucket, s3_endpoint)
    with pytest.raises(RuntimeError), store.create() as pending:
        pending.file.write(os.urandom(2 * PART + 1))  # two parts already sent
        raise RuntimeError("client went away")
    assert not client.list_multipart_uploads(Bucket=name).get("Uploads")
    assert "Contents" not in client.list_objects_v2(Bucket=name)


def test_keys_are_validated(bucket, s3_endpoint):
    store = _store(bucket, s3_endpoint)
    for bad in ("../etc/passwd", "AB" * 16, "", None):
        with pytest.raises(InvalidBlobKeyError):
            store.exists(bad)  # type: ignore[arg-type]


def test_upload_read_range_and_purge_through_the_bucket(s3_app, bucket, make_org, make_user, make_armoire):
    from portal.documents.models import File
    from portal.documents.services import reading, trash, uploads
    from portal.extensions import db

    client, name = bucket
    org = make_org()
    admin = make_user("admin", org=org)
    actor = Actor(org.id, admin.id)
    armoire = make_armoire(org)
    secret = b"releve bancaire confidentiel\n" * 200_000  # ~5.8 MiB: several segments
    version = uploads.store_upload(actor, armoire, None, "releve.txt", iter([secret]), None)
    db.session.commit()
    assert version.storage_backend == "s3"
    stored = client.get_object(Bucket=name, Key=f"blobs/{version.storage_key}")["Body"].read()
    assert b"releve bancaire" not in stored and b"releve.txt" not in stored  # ciphertext, opaque name

    file = db.session.get(File, version.file_id)
    _v, chunks = reading.open_version_stream(actor, file, None, 1_000_000, 1_000_100)
    assert b"".join(chunks) == secret[1_000_000:1_000_100]
    db.session.commit()

    trash.trash_file(actor, file)
    db.session.commit()
    keys = trash.purge_file(actor, db.session.get(File, version.file_id))
    db.session.commit()
    from portal.storage.blobs import delete_blobs

    delete_blobs(keys)
    listed = client.list_object_versions(Bucket=name)
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")


def test_check_storage_on_the_bucket(s3_app, bucket, make_org, make_user, make_armoire):
    from portal.documents.services import uploads
    from portal.documents.services.consistency import check_storage
    from portal.extensions import db

    client, name = bucket
    org = make_org()
    admin = make_user("admin", org=org)
    actor = Actor(org.id, admin.id)
    version = uploads.store_upload(actor, make_armoire(org), None, "a.txt", iter([b"contenu\n"]), None)
    db.session.commit()
    store = get_blob_store()
    with store.create() as orphan:
        orphan.file.write(b"no row points here")
    client.delete_object(Bucket=name, Key=f"blobs/{version.storage_key}")  # a lost blob
    report = check_storage(fix=True, grace_seconds=0)
    db.session.commit()
    assert report.orphan_blobs == [orphan.key]
    assert [m[2] for m in report.missing_blobs] == [version.id]
    assert not store.exists(orphan.key)
