"""File endpoints: upload receipt, download digests, versions, trash, errors."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.documents.models import File, FileVersion
from portal.extensions import db


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def upload(client, secret, armoire_id, content=b"contenu du fichier\n", name="note.txt", **fields):
    data = {"armoire_id": str(armoire_id), **{k: str(v) for k, v in fields.items()}}
    data["file"] = (io.BytesIO(content), name)
    return client.post("/api/v1/fichiers", data=data, headers=bearer(secret), content_type="multipart/form-data")


@pytest.fixture
def armoire(make_armoire, org):
    return make_armoire(org)


def test_upload_returns_a_receipt_after_commit(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    content = b"x" * 300_000
    response = upload(client, secret, armoire.id, content, delete_after_upload="true")
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    assert receipt["sha256"] == hashlib.sha256(content).hexdigest()
    assert receipt["size"] == len(content) and receipt["version"] == 1
    assert receipt["delete_local"] is True
    assert response.headers["Location"].endswith(f"/api/v1/fichiers/{receipt['file_id']}")
    db.session.expire_all()
    version = db.session.execute(select(FileVersion)).scalar_one()
    assert version.sha256 == receipt["sha256"]
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "file.added")).scalar_one()
    assert entry.target_id == receipt["file_id"]


@pytest.mark.parametrize("flag", [None, "false", "0"])
def test_delete_local_is_false_unless_asked(client, contributor, make_token, armoire, flag):
    secret = make_token(contributor)
    fields = {} if flag is None else {"delete_after_upload": flag}
    response = upload(client, secret, armoire.id, **fields)
    assert response.status_code == 201
    assert response.get_json()["delete_local"] is False


def test_upload_validation(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    bad_flag = upload(client, secret, armoire.id, delete_after_upload="peut-être")
    assert bad_flag.status_code == 422
    assert {e["field"] for e in bad_flag.get_json()["errors"]} == {"delete_after_upload"}
    huge = upload(client, secret, "9" * 40)
    assert huge.status_code == 422
    no_file = client.post(
        "/api/v1/fichiers",
        data={"armoire_id": str(armoire.id)},
        headers=bearer(secret),
        content_type="multipart/form-data",
    )
    assert no_file.status_code == 422
    wrong_type = client.post("/api/v1/fichiers", json={"armoire_id": armoire.id}, headers=bearer(secret))
    assert wrong_type.status_code == 415
    assert wrong_type.get_json()["type"] == "/problems/unsupported-media-type"
    garbage = client.post(
        "/api/v1/fichiers",
        data=b"--zz\r\nnot a header\r\n",
        headers=bearer(secret) | {"Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert garbage.status_code == 400
    assert garbage.mimetype == "application/problem+json"
    assert db.session.execute(select(File)).first() is None


def test_quota_refusal_is_413_and_keeps_nothing(client, contributor, make_token, armoire, org):
    org.storage_quota_bytes = 10
    db.session.commit()
    secret = make_token(contributor)
    response = upload(client, secret, armoire.id, b"y" * 100, delete_after_upload="true")
    assert response.status_code == 413
    assert response.get_json()["type"] == "/problems/quota-exceeded"
    assert db.session.execute(select(File)).first() is None


def test_download_streams_with_digest_headers(client, contributor, make_token, armoire, store_file):
    file = store_file(contributor, armoire, content=b"premier")
    secret = make_token(contributor)
    second = client.post(
        f"/api/v1/fichiers/{file.id}/versions",
        data={"comment": "v2", "file": (io.BytesIO(b"second contenu"), "note.txt")},
        headers=bearer(secret),
        content_type="multipart/form-data",
    )
    assert second.status_code == 201 and second.get_json()["version"] == 2
    latest = client.get(f"/api/v1/fichiers/{file.id}/contenu", headers=bearer(secret))
    assert latest.status_code == 200 and latest.data == b"second contenu"
    digest = hashlib.sha256(b"second contenu")
    assert latest.headers["X-Content-SHA256"] == digest.hexdigest()
    assert latest.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
    first = client.get(f"/api/v1/fichiers/{file.id}/contenu?version=1", headers=bearer(secret))
    assert first.data == b"premier"
    assert client.get(f"/api/v1/fichiers/{file.id}/contenu?version=9", headers=bearer(secret)).status_code == 404
    assert client.get(f"/api/v1/fichiers/{file.id}/contenu?version=x", headers=bearer(secret)).status_code == 422
    versions = client.get(f"/api/v1/fichiers/{file.id}/versions", headers=bearer(secret)).get_json()["items"]
    assert [v["number"] for v in versions] == [2, 1]


def test_list_get_and_trash(client, contributor, make_token, armoire, store_file):
    file = store_file(contributor, armoire)
    secret = make_token(contributor)
    listing = client.get(f"/api/v1/armoires/{armoire.id}/fichiers?per_page=10", headers=bearer(secret)).get_json()
    assert [f["id"] for f in listing["items"]] == [file.id] and listing["total"] == 1
    assert client.get(f"/api/v1/fichiers/{file.id}", headers=bearer(secret)).get_json()["name"] == "rapport.txt"
    assert client.delete(f"/api/v1/fichiers/{file.id}", headers=bearer(secret)).status_code == 204
    listing = client.get(f"/api/v1/armoires/{armoire.id}/fichiers", headers=bearer(secret)).get_json()
    assert listing["items"] == []
    assert client.delete(f"/api/v1/fichiers/{file.id}", headers=bearer(secret)).status_code == 404
    assert client.get(f"/api/v1/armoires/{armoire.id}/fichiers?folder=99", headers=bearer(secret)).status_code == 404


def test_huge_ids_are_404_not_500(client, contributor, make_token):
    secret = make_token(contributor)
    assert client.get("/api/v1/fichiers/" + "9" * 30, headers=bearer(secret)).status_code == 404
    assert client.get("/api/v1/armoires/99999999999/fichiers", headers=bearer(secret)).status_code == 404
