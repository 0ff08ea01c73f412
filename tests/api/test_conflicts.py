"""Name conflicts of API uploads: on_conflict=version|rename|refuse, atomic under concurrency."""

from __future__ import annotations

import hashlib
import io
import threading

import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from portal.audit.models import AuditEntry
from portal.documents.models import File, FileVersion
from portal.extensions import db


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def upload(client, secret, armoire_id, content=b"v1\n", name="facture.pdf", query="", **fields):
    data = {"armoire_id": str(armoire_id), **{k: str(v) for k, v in fields.items()}}
    data["file"] = (io.BytesIO(content), name)
    return client.post(
        "/api/v1/fichiers" + query, data=data, headers=bearer(secret), content_type="multipart/form-data"
    )


@pytest.fixture
def armoire(make_armoire, org):
    return make_armoire(org)


def live_files():
    db.session.rollback()
    return list(db.session.execute(select(File).where(File.deleted_at.is_(None)).order_by(File.id)).scalars())


def test_refuse_is_the_default_and_names_the_existing_file(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    first = upload(client, secret, armoire.id)
    assert first.status_code == 201
    again = upload(client, secret, armoire.id, b"autre\n")
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    body = again.get_json()
    assert body["type"] == "/problems/name-taken"
    assert body["existing_file_id"] == first.get_json()["file_id"]
    explicit = upload(client, secret, armoire.id, b"autre\n", on_conflict="refuse")
    assert explicit.status_code == 409
    assert len(live_files()) == 1
    # Nothing of the refused uploads is left on disk: one blob, the first version's.
    assert db.session.execute(select(FileVersion)).scalars().all()[0].number == 1


def test_version_adds_a_version_to_the_existing_file(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    first = upload(client, secret, armoire.id).get_json()
    second = upload(client, secret, armoire.id, b"v2\n", on_conflict="version")
    assert second.status_code == 201
    receipt = second.get_json()
    assert receipt["file_id"] == first["file_id"] and receipt["version"] == 2
    assert receipt["sha256"] == hashlib.sha256(b"v2\n").hexdigest()
    # The new version reads back (its key and blob are bound without the file id).
    content = client.get(f"/api/v1/fichiers/{first['file_id']}/contenu", headers=bearer(secret))
    assert content.status_code == 200 and content.data == b"v2\n"
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "file.modified")).scalar_one()
    assert entry.target_id == first["file_id"]


def test_rename_keeps_both(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    upload(client, secret, armoire.id)
    second = upload(client, secret, armoire.id, b"deux\n", query="?on_conflict=rename")
    third = upload(client, secret, armoire.id, b"trois\n", on_conflict="rename")
    assert second.status_code == third.status_code == 201
    assert second.get_json()["name"] == "facture (2).pdf"
    assert third.get_json()["name"] == "facture (3).pdf"
    assert [f.name for f in live_files()] == ["facture.pdf", "facture (2).pdf", "facture (3).pdf"]


def test_a_trashed_file_is_no_conflict_and_other_folders_neither(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    first = upload(client, secret, armoire.id).get_json()
    assert client.delete(f"/api/v1/fichiers/{first['file_id']}", headers=bearer(secret)).status_code == 204
    assert upload(client, secret, armoire.id).status_code == 201


def test_bad_on_conflict_is_a_422(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    response = upload(client, secret, armoire.id, on_conflict="écraser")
    assert response.status_code == 422
    assert {e["field"] for e in response.get_json()["errors"]} == {"on_conflict"}


@pytest.mark.parametrize("mode", ["refuse", "rename", "version"])
def test_concurrent_uploads_of_one_new_name(app_factory, contributor, make_token, armoire, mode):
    """Eight uploads of the same new name at once, through a real threaded server: never two
    files with one name (refuse: one wins, the rest get 409; rename: eight distinct names;
    version: one file with eight versions)."""
    secret = make_token(contributor)
    armoire_id = armoire.id
    server = make_server("127.0.0.1", 0, app_factory(SERVER_NAME=None), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/api/v1/fichiers"
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def send(index: int) -> None:
        barrier.wait()
        response = httpx.post(
            url,
            headers=bearer(secret),
            data={"armoire_id": str(armoire_id), "on_conflict": mode},
            files={"file": ("course.pdf", b"%d\n" % index)},
            timeout=60,
        )
        statuses.append(response.status_code)

    workers = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    files = live_files()
    names = [f.name for f in files]
    assert len(names) == len(set(names))
    if mode == "refuse":
        assert sorted(statuses) == [201] + [409] * 7
        assert names == ["course.pdf"]
    elif mode == "rename":
        assert statuses == [201] * 8
        assert sorted(names) == sorted(["course.pdf"] + [f"course ({n}).pdf" for n in range(2, 9)])
    else:
        assert statuses == [201] * 8
        assert names == ["course.pdf"]
        numbers = db.session.execute(select(FileVersion.number).where(FileVersion.file_id == files[0].id)).scalars()
        assert sorted(numbers) == list(range(1, 9))


def test_the_api_new_version_renames_too(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    headers = {"Authorization": f"Bearer {secret}"}
    created = upload(client, secret, armoire.id, name="note.txt")
    assert created.status_code == 201
    file_id = created.get_json()["file_id"]
    response = client.post(
        f"/api/v1/fichiers/{file_id}/versions",
        data={"file": (io.BytesIO(b"# v2"), "note.md")},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    db.session.rollback()
    assert db.session.get(File, file_id).name == "note.md"
    renamed = db.session.execute(select(AuditEntry).where(AuditEntry.action == "file.renamed")).scalar_one()
    assert renamed.details["from"] == "note.txt" and renamed.details["to"] == "note.md"
    # The new name must be free: a second file named note.txt cannot become note.md.
    other = upload(client, secret, armoire.id, name="note.txt").get_json()["file_id"]
    refused = client.post(
        f"/api/v1/fichiers/{other}/versions",
        data={"file": (io.BytesIO(b"# v2"), "note.md")},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert refused.status_code == 409 and refused.get_json()["existing_file_id"] == file_id
