"""Selections: streamed ZIP (decrypted on the fly), bulk move/trash/restore, roles, tenancy, bad input."""

from __future__ import annotations

import io
import json
import zipfile

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.documents.models import File
from portal.documents.services import bulk, folders
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import blob_files, last_file, upload

HX = {"HX-Request": "true"}


def _ids(client, armoire, *names_and_contents):
    ids = []
    for name, content in names_and_contents:
        assert upload(client, armoire.id, name, content).status_code == 201
        ids.append(last_file().id)
    return ids


def test_zip_streams_the_plaintext_of_each_selected_file(contributor_client, armoire, storage_dir):
    big = bytes(range(256)) * 8192  # 2 MiB, several encrypted segments
    ids = _ids(contributor_client, armoire, ("a.bin", big), ("rapport.txt", b"un"), ("Rapport.txt", b"deux"))
    before = sorted(blob_files(storage_dir))
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    response = contributor_client.post(
        f"/armoires/{armoire.id}/selection/zip", data={"csrf_token": token, "ids": [str(i) for i in ids]}
    )
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert archive.namelist() == ["a.bin", "rapport.txt", "Rapport (2).txt"]
    assert archive.read("a.bin") == big and archive.read("Rapport (2).txt") == b"deux"
    assert sorted(blob_files(storage_dir)) == before  # nothing new on disk
    downloads = db.session.execute(db.select(AuditEntry).where(AuditEntry.action == "file.downloaded")).scalars()
    assert sorted(entry.target_id for entry in downloads) == sorted(ids)


def test_bulk_move_trash_and_undo(contributor_client, contributor, armoire):
    ids = _ids(contributor_client, armoire, ("un.txt", b"1"), ("deux.txt", b"2"))
    target = folders.create_folder(Actor(contributor.organization_id, contributor.id), armoire, None, "Cible")
    db.session.commit()
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    data = {"csrf_token": token, "ids": [str(i) for i in ids], "destination": f"{armoire.id}:{target.id}"}
    moved = contributor_client.post(f"/armoires/{armoire.id}/selection/deplacer", data=data, headers=HX)
    assert moved.status_code == 200 and 'id="file-list"' in moved.get_data(as_text=True)
    assert "2 fichiers déplacés" in json.loads(moved.headers["HX-Trigger"])["coffre:toast"]["message"]
    db.session.expire_all()
    assert {db.session.get(File, i).folder_id for i in ids} == {target.id}
    trashed = contributor_client.post(
        f"/armoires/{armoire.id}/selection/corbeille",
        data={"csrf_token": token, "ids": [str(ids[0])], "dossier": str(target.id)},
        headers=HX,
    )
    toast = json.loads(trashed.headers["HX-Trigger"])["coffre:toast"]
    assert toast["undo"]["ids"] == [ids[0]]
    db.session.expire_all()
    assert db.session.get(File, ids[0]).deleted_at is not None
    undone = contributor_client.post(
        toast["undo"]["url"],
        data={"csrf_token": token, "ids": [str(ids[0])], "dossier": str(target.id)},
        headers=HX,
    )
    assert undone.status_code == 200 and "un.txt" in undone.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(File, ids[0]).deleted_at is None


def test_roles_bad_input_and_other_organisations(
    contributor_client, reader_client, armoire, make_org, make_user, login_as
):
    (file_id,) = _ids(contributor_client, armoire, ("x.txt", b"x"))
    token = csrf(reader_client, f"/armoires/{armoire.id}")
    data = {"csrf_token": token, "ids": [str(file_id)], "destination": f"{armoire.id}:"}
    assert reader_client.post(f"/armoires/{armoire.id}/selection/deplacer", data=data).status_code == 403
    assert reader_client.post(f"/armoires/{armoire.id}/selection/corbeille", data=data).status_code == 403
    assert reader_client.post(f"/armoires/{armoire.id}/selection/zip", data=data).status_code == 200
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    for ids in ([], ["abc"], ["-1"], [str(file_id)] * 0 + ["1" * 11]):
        bad = contributor_client.post(f"/armoires/{armoire.id}/selection/zip", data={"csrf_token": token, "ids": ids})
        assert bad.status_code == 422
    assert bulk.zip_names(["a.txt", "A.txt", "a (2).txt", "sans"]) == ["a.txt", "A (2).txt", "a (2) (2).txt", "sans"]
    other = login_as(make_user("admin", make_org("Autre")))
    other_token = csrf(other, "/armoires")
    response = other.post(
        f"/armoires/{armoire.id}/selection/zip", data={"csrf_token": other_token, "ids": [str(file_id)]}
    )
    assert response.status_code == 404
    missing = contributor_client.post(
        f"/armoires/{armoire.id}/selection/zip", data={"csrf_token": token, "ids": [str(file_id), "999999"]}
    )
    assert missing.status_code == 404
