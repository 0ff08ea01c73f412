"""tus 1.0 resumable uploads at /api/v1/uploads/: protocol, receipt, conflicts, expiry."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.documents.models import File, FileVersion, ResumableUpload
from portal.extensions import db

MIB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **TUS}


def metadata(**values) -> str:
    return ",".join(f"{key} {b64(str(value))}" for key, value in values.items())


def create(client, secret, length, **meta):
    headers = bearer(secret) | {"Upload-Length": str(length), "Upload-Metadata": metadata(**meta)}
    return client.post("/api/v1/uploads/", headers=headers)


def patch(client, secret, location, offset, body, **headers):
    return client.patch(
        location,
        data=body,
        headers=bearer(secret)
        | {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        | headers,
    )


@pytest.fixture
def armoire(make_armoire, org):
    return make_armoire(org)


def test_options_advertises_the_extensions(client):
    response = client.options("/api/v1/uploads/")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {"creation", "termination", "checksum"}
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"]


def test_upload_in_parts_then_receipt(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    content = os.urandom(3 * MIB + 123)
    created = create(
        client, secret, len(content), filename="relevé.pdf", armoire_id=armoire.id, delete_after_upload="true"
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    location = created.headers["Location"]
    assert created.headers["Tus-Resumable"] == "1.0.0"
    uid = location.rstrip("/").rsplit("/", 1)[1]
    # A part that does not end on a segment boundary: the server keeps what it sealed.
    first = patch(client, secret, location, 0, content[: MIB + 500])
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == str(MIB)
    assert "Coffre-File-Id" not in first.headers
    head = client.head(location, headers=bearer(secret))
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(MIB)
    assert head.headers["Upload-Length"] == str(len(content)) and head.headers["Cache-Control"] == "no-store"
    wrong = patch(client, secret, location, 500, content[500:])
    assert wrong.status_code == 409 and wrong.headers["Upload-Offset"] == str(MIB)
    # No receipt before the end.
    pending = client.get(f"/api/v1/uploads/{uid}", headers=bearer(secret)).get_json()
    assert pending["complete"] is False and pending["offset"] == MIB and "file_id" not in pending
    last = patch(client, secret, location, MIB, content[MIB:])
    assert last.status_code == 204
    assert last.headers["Upload-Offset"] == str(len(content))
    file_id = int(last.headers["Coffre-File-Id"])
    assert last.headers["Coffre-Version"] == "1"
    receipt = client.get(f"/api/v1/uploads/{uid}", headers=bearer(secret)).get_json()
    assert receipt["complete"] is True and receipt["file_id"] == file_id and receipt["version"] == 1
    assert receipt["sha256"] == hashlib.sha256(content).hexdigest()
    assert receipt["delete_local"] is True and receipt["name"] == "relevé.pdf"
    download = client.get(f"/api/v1/fichiers/{file_id}/contenu", headers=bearer(secret))
    assert download.data == content
    assert patch(client, secret, location, len(content), b"x").status_code == 409
    assert len(db.session.execute(select(FileVersion)).scalars().all()) == 1


def test_empty_file(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    location = create(client, secret, 0, filename="vide.txt", armoire_id=armoire.id).headers["Location"]
    done = patch(client, secret, location, 0, b"")
    assert done.status_code == 204 and done.headers["Coffre-Version"] == "1"
    file = db.session.get(File, int(done.headers["Coffre-File-Id"]))
    assert file.size == 0


def test_checksum_mismatch_keeps_nothing_of_the_part(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    content = os.urandom(2 * MIB + 7)
    location = create(client, secret, len(content), filename="a.bin", armoire_id=armoire.id).headers["Location"]
    part = content[: 2 * MIB]
    bad = base64.b64encode(hashlib.sha1(b"autre chose").digest()).decode()
    refused = patch(client, secret, location, 0, part, **{"Upload-Checksum": f"sha1 {bad}"})
    assert refused.status_code == 460
    assert client.head(location, headers=bearer(secret)).headers["Upload-Offset"] == "0"
    good = base64.b64encode(hashlib.sha256(part).digest()).decode()
    kept = patch(client, secret, location, 0, part, **{"Upload-Checksum": f"sha256 {good}"})
    assert kept.status_code == 204 and kept.headers["Upload-Offset"] == str(2 * MIB)
    assert patch(client, secret, location, 2 * MIB, content[2 * MIB :]).status_code == 204
    version = db.session.execute(select(FileVersion)).scalar_one()
    assert version.sha256 == hashlib.sha256(content).hexdigest()


def test_protocol_errors(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    no_version = client.post(
        "/api/v1/uploads/",
        headers={"Authorization": f"Bearer {secret}", "Upload-Length": "3", "Upload-Metadata": metadata(filename="a")},
    )
    assert no_version.status_code == 412 and no_version.headers["Tus-Version"] == "1.0.0"
    assert create(client, secret, 3, armoire_id=armoire.id).status_code == 400  # no filename
    assert create(client, secret, 3, filename="a.txt").status_code == 400  # no armoire
    assert create(client, secret, 3, filename="a.txt", armoire_id=999999).status_code == 404
    assert create(client, secret, 3, filename="a.txt", armoire_id=armoire.id, on_conflict="x").status_code == 400
    huge = create(client, secret, 10**15, filename="a.txt", armoire_id=armoire.id)
    assert huge.status_code == 413 and huge.mimetype == "application/problem+json"
    location = create(client, secret, 3, filename="a.txt", armoire_id=armoire.id).headers["Location"]
    wrong_type = client.patch(location, data=b"abc", headers=bearer(secret) | {"Upload-Offset": "0"})
    assert wrong_type.status_code == 415
    too_long = patch(client, secret, location, 0, b"abcd")
    assert too_long.status_code == 413
    assert client.head(location, headers=bearer(secret)).headers["Upload-Offset"] == "0"
    assert client.head("/api/v1/uploads/" + "0" * 32, headers=bearer(secret)).status_code == 404


def test_someone_elses_upload_is_a_404(client, contributor, make_user, make_token, armoire, org):
    secret = make_token(contributor)
    other = make_token(make_user("contributeur", org=org))
    location = create(client, secret, 3, filename="a.txt", armoire_id=armoire.id).headers["Location"]
    assert client.head(location, headers=bearer(other)).status_code == 404
    assert patch(client, other, location, 0, b"abc").status_code == 404


def test_reader_cannot_create(client, reader, make_token, armoire):
    assert create(client, make_token(reader), 3, filename="a.txt", armoire_id=armoire.id).status_code == 403


def test_termination_removes_the_partial_blob(app, client, contributor, make_token, armoire):
    from portal.storage.blobs import get_blob_store

    secret = make_token(contributor)
    location = create(client, secret, 2 * MIB, filename="a.bin", armoire_id=armoire.id).headers["Location"]
    patch(client, secret, location, 0, os.urandom(MIB))
    upload = db.session.execute(select(ResumableUpload)).scalar_one()
    assert get_blob_store().resumable_size(upload.blob_key) is not None
    blob_key = upload.blob_key
    assert client.delete(location, headers=bearer(secret)).status_code == 204
    assert get_blob_store().resumable_size(blob_key) is None
    db.session.expire_all()
    assert db.session.execute(select(ResumableUpload)).scalar_one_or_none() is None
    assert client.head(location, headers=bearer(secret)).status_code == 404


@pytest.mark.parametrize("mode", ["refuse", "version", "rename"])
def test_conflicts_are_decided_at_the_end(client, contributor, make_token, armoire, store_file, mode):
    existing = store_file(contributor, armoire, name="bilan.pdf")
    secret = make_token(contributor)
    location = create(client, secret, 5, filename="bilan.pdf", armoire_id=armoire.id, on_conflict=mode).headers[
        "Location"
    ]
    done = patch(client, secret, location, 0, b"bilan")
    if mode == "refuse":
        assert done.status_code == 409
        assert done.get_json()["existing_file_id"] == existing.id
        # The upload cannot finish any more: it is gone with its bytes.
        assert client.head(location, headers=bearer(secret)).status_code == 404
        return
    assert done.status_code == 204
    file_id = int(done.headers["Coffre-File-Id"])
    if mode == "version":
        assert file_id == existing.id and done.headers["Coffre-Version"] == "2"
    else:
        assert db.session.get(File, file_id).name == "bilan (2).pdf"


def test_expiry_removes_unfinished_uploads_and_their_blobs(app, client, contributor, make_token, armoire):
    from portal.crypto.models import DataKey
    from portal.database import utcnow
    from portal.documents.jobs import expire_uploads_now
    from portal.storage.blobs import get_blob_store

    secret = make_token(contributor)
    location = create(client, secret, 2 * MIB, filename="a.bin", armoire_id=armoire.id).headers["Location"]
    patch(client, secret, location, 0, os.urandom(MIB))
    finished = create(client, secret, 1, filename="b.bin", armoire_id=armoire.id).headers["Location"]
    assert patch(client, secret, finished, 0, b"b").status_code == 204
    upload = db.session.execute(select(ResumableUpload).where(ResumableUpload.completed_at.is_(None))).scalar_one()
    blob_key, key_id = upload.blob_key, upload.data_key_id
    assert expire_uploads_now() == 0  # nothing is 24 hours old yet
    upload.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.head(location, headers=bearer(secret)).status_code == 410
    assert expire_uploads_now() == 1
    assert get_blob_store().resumable_size(blob_key) is None
    db.session.expire_all()
    assert db.session.get(DataKey, key_id) is None
    # The finished upload's receipt is still there; its file too.
    assert len(db.session.execute(select(ResumableUpload)).scalars().all()) == 1
    assert db.session.execute(select(File)).scalar_one().name == "b.bin"


def test_a_second_request_on_a_busy_upload_is_a_423(app, client, contributor, make_token, armoire):
    """One request at a time per upload, across processes: the partial blob is flock()ed."""
    import fcntl

    from portal.storage.blobs import get_blob_store

    secret = make_token(contributor)
    location = create(client, secret, 2 * MIB, filename="a.bin", armoire_id=armoire.id).headers["Location"]
    upload = db.session.execute(select(ResumableUpload)).scalar_one()
    with get_blob_store().open_resumable(upload.blob_key) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        busy = patch(client, secret, location, 0, os.urandom(MIB))
        assert busy.status_code == 423 and busy.headers["Tus-Resumable"] == "1.0.0"
        assert client.delete(location, headers=bearer(secret)).status_code == 423
    assert patch(client, secret, location, 0, os.urandom(MIB)).headers["Upload-Offset"] == str(MIB)


def test_expiry_removes_partial_blobs_no_row_names(app):
    import time

    from portal.documents.jobs import expire_uploads_now
    from portal.storage.blobs import get_blob_store

    store = get_blob_store()
    old, recent = "a" * 32, "b" * 32
    for key in (old, recent):
        store.create_resumable(key).close()
    day_ago = time.time() - 25 * 3600
    os.utime(store.root / "resumable" / f"{old}.part", (day_ago, day_ago))
    assert expire_uploads_now() == 1
    assert store.resumable_size(old) is None and store.resumable_size(recent) == 0
