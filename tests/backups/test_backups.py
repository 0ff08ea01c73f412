"""Backups: content-addressed ciphertext, signed manifest, incremental, verify, restore, purge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.backups.manifests import Manifest
from portal.backups.models import Backup, Restore
from portal.backups.repository import ManifestError, get_repository
from portal.documents.models import File, FileVersion
from portal.documents.services import trash, uploads
from portal.extensions import db
from tests.api.conftest import bearer
from tests.backups.conftest import damage_object, flip_byte, object_bytes, read_contents

SECRET_TEXT = b"Releve de compte tres confidentiel 0123456789\n" * 200


def _backup(client, token) -> dict:
    response = client.post("/api/v1/sauvegardes", headers=bearer(token))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def _actions(org_id: int) -> list[str]:
    return list(
        db.session.execute(
            select(AuditEntry.action).where(AuditEntry.organization_id == org_id).order_by(AuditEntry.id)
        ).scalars()
    )


def _read(file: File) -> bytes:
    from portal.documents.services.reading import open_version_stream

    _version, stream = open_version_stream(Actor(file.organization_id, None), file, record_access=False)
    return b"".join(stream)


@pytest.fixture
def setup(app, admin, make_token, make_armoire, store_file):
    armoire = make_armoire(admin.organization)
    first = store_file(admin, armoire, "releve.txt", SECRET_TEXT)
    second = store_file(admin, armoire, "note.txt", b"deuxieme fichier\n" * 50)
    return {"token": make_token(admin), "armoire": armoire, "files": [first, second]}


def test_backup_copies_ciphertext_and_signs_its_manifest(app, client, admin, setup, wait):
    row = _backup(client, setup["token"])
    assert row["status"] == "en_cours" and set(row) == {
        "id",
        "created_at",
        "trigger",
        "status",
        "summary",
        "verified_at",
    }
    wait()
    backup = db.session.get(Backup, row["id"])
    assert backup.status == "reussie", backup.error
    assert backup.summary["files"] == 2 and backup.summary["versions"] == 2 and backup.summary["objects"] == 2
    repo = get_repository()
    body = read_contents(backup.path)
    store_root = Path(app.config["COFFRE_STORAGE_DIR"])
    for version in body["versions"]:
        blob = (
            store_root / version["storage_key"][:2] / version["storage_key"][2:4] / version["storage_key"]
        ).read_bytes()
        assert object_bytes(version["object"]) == blob  # copied as it is: ciphertext
    everything = b"".join(p.read_bytes() for p in repo.root.rglob("*") if p.is_file())
    assert SECRET_TEXT[:40] not in everything
    assert {m["email"] for m in body["members"]} == {admin.email}
    assert all("password_hash" not in m for m in body["members"])
    assert body["journal"] and "backup.created" in _actions(admin.organization_id)

    # A manifest changed by one byte is refused.
    path = repo.root / backup.path
    envelope = json.loads(path.read_bytes())
    original = path.read_bytes()
    envelope["body"]["armoires"][0]["name"] = "Autre"
    path.write_text(json.dumps(envelope))
    with pytest.raises(ManifestError):
        read_contents(backup.path)

    # So is a part changed by one byte: the signed top names each part by its hash.
    path.write_bytes(original)
    files_part = envelope["body"]["parts"]["files"][0]["object"]
    damage_object(files_part, lambda data: data.replace(b"releve.txt", b"releve.txu"))
    with pytest.raises(ManifestError, match=files_part):
        read_contents(backup.path)
    refused = client.post(
        f"/api/v1/sauvegardes/{backup.id}/restaurer", json={"all": True}, headers=bearer(setup["token"])
    )
    assert refused.status_code == 409 and files_part in refused.get_data(as_text=True)
    assert db.session.execute(select(Restore)).first() is None
    result = app.test_cli_runner().invoke(args=["backups", "verify", str(backup.id)])
    assert result.exit_code == 1 and files_part in result.output


def test_second_backup_stores_only_what_changed(app, client, admin, setup, wait):
    first = _backup(client, setup["token"])
    wait()
    file = setup["files"][1]
    uploads.add_version(Actor(admin.organization_id, admin.id), file, None, iter([b"v2\n" * 30]), 90)
    db.session.commit()
    second = _backup(client, setup["token"])
    wait()
    one, two = db.session.get(Backup, first["id"]), db.session.get(Backup, second["id"])
    assert two.status == "reussie"
    assert two.summary["versions"] == 3 and two.summary["objects"] == 3
    repo = get_repository()
    manifest_size = (repo.root / two.path).stat().st_size
    first_parts = {ref["object"] for ref in Manifest.load(repo, one.path).part_refs()}
    second_parts = Manifest.load(repo, two.path).part_refs()
    new_parts = [ref for ref in second_parts if ref["object"] not in first_parts]
    # The members part did not change: it is the same object, not written again.
    assert len(new_parts) < len(second_parts)
    manifest_size += sum(ref["size"] for ref in new_parts)
    new_version = db.session.execute(select(FileVersion).where(FileVersion.number == 2)).scalar_one()
    blob_size = (
        Path(
            app.config["COFFRE_STORAGE_DIR"],
            new_version.storage_key[:2],
            new_version.storage_key[2:4],
            new_version.storage_key,
        )
        .stat()
        .st_size
    )
    # Only the new blob, its key, the changed parts and the top manifest were written.
    assert blob_size + manifest_size <= two.summary["new_bytes"] <= blob_size + manifest_size + 1024
    assert two.summary["new_bytes"] < one.summary["new_bytes"]


def test_verify_cli_names_the_bad_object(app, client, admin, setup, wait):
    row = _backup(client, setup["token"])
    wait()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["backups", "verify", str(row["id"])])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.get(Backup, row["id"]).status == "verifiee"
    body = read_contents(db.session.get(Backup, row["id"]).path)
    victim = body["versions"][0]["object"]
    damage_object(victim, flip_byte(100))
    result = runner.invoke(args=["backups", "verify", "--all"])
    assert result.exit_code == 1
    assert victim in result.output
    db.session.expire_all()
    backup = db.session.get(Backup, row["id"])
    assert backup.status == "echouee" and backup.verification_ok is False and victim in backup.verification_detail
    assert "backup.verified" in _actions(admin.organization_id)
    # A restore from it is refused.
    response = client.post(
        f"/api/v1/sauvegardes/{row['id']}/restaurer", json={"all": True}, headers=bearer(setup["token"])
    )
    assert response.status_code == 409


def _restore(client, token, backup_id, payload) -> dict:
    response = client.post(f"/api/v1/sauvegardes/{backup_id}/restaurer", json=payload, headers=bearer(token))
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def test_restore_makes_new_versions_and_runs_again_to_the_same_state(app, client, admin, setup, wait):
    row = _backup(client, setup["token"])
    wait()
    actor = Actor(admin.organization_id, admin.id)
    changed, trashed = setup["files"]
    uploads.add_version(actor, changed, None, iter([b"ecrase par erreur\n"]), 18)
    trash.trash_file(actor, trashed)
    db.session.commit()

    job = _restore(client, setup["token"], row["id"], {"all": True})
    wait()
    status = client.get(f"/api/v1/restaurations/{job['id']}", headers=bearer(setup["token"])).get_json()
    assert status["status"] == "reussie", db.session.get(Restore, job["id"]).error
    assert status["counts"] == {"restored": 2, "unchanged": 0, "skipped_purged": 0, "failed": 0}
    changed = db.session.get(File, changed.id)
    versions = (
        db.session.execute(select(FileVersion).where(FileVersion.file_id == changed.id).order_by(FileVersion.number))
        .scalars()
        .all()
    )
    assert [v.number for v in versions] == [1, 2, 3]  # nothing overwritten
    assert changed.current_version.number == 3 and versions[2].restored_from_version == 1
    assert _read(changed) == SECRET_TEXT
    back = db.session.get(File, trashed.id)
    assert back.deleted_at is None and back.current_version.number == 2
    actions = _actions(admin.organization_id)
    assert actions.count("file.restored_from_backup") == 2 and "backup.restored" in actions
    pre = db.session.execute(select(Backup).where(Backup.trigger == "pre_restauration")).scalar_one()
    assert pre.status == "reussie"

    again = _restore(client, setup["token"], row["id"], {"all": True})
    wait()
    status = client.get(f"/api/v1/restaurations/{again['id']}", headers=bearer(setup["token"])).get_json()
    assert status["counts"] == {"restored": 0, "unchanged": 2, "skipped_purged": 0, "failed": 0}
    assert db.session.get(File, changed.id).current_version.number == 3


def test_a_read_only_subscription_refuses_a_restore_before_it_starts(app, client, admin, setup, wait):
    """Reads keep working in lecture_seule, writes do not: a restore (new versions) is refused
    once, with the subscription's own problem type, instead of a job counting every file failed."""
    from portal.billing.models import STATUS_READ_ONLY
    from portal.billing.services import subscription_for

    row = _backup(client, setup["token"])
    wait()
    subscription_for(admin.organization_id).status = STATUS_READ_ONLY
    db.session.commit()
    response = client.post(
        f"/api/v1/sauvegardes/{row['id']}/restaurer", json={"all": True}, headers=bearer(setup["token"])
    )
    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/subscription-read-only"
    assert db.session.execute(select(Restore)).first() is None
    # Backups themselves (reads of the organisation's data) still run.
    assert _backup(client, setup["token"])["status"] == "en_cours"
    wait()


def test_a_purge_reaches_the_backups(app, client, admin, setup, wait):
    row = _backup(client, setup["token"])
    wait()
    actor = Actor(admin.organization_id, admin.id)
    victim = setup["files"][0]
    body = read_contents(db.session.get(Backup, row["id"]).path)
    uid = next(v["data_key_uid"] for v in body["versions"] if v["file_id"] == victim.id)
    assert get_repository().read_key(admin.organization_id, uid) is not None
    trash.trash_file(actor, victim)
    db.session.commit()
    keys = trash.purge_file(actor, db.session.get(File, victim.id))
    db.session.commit()
    from portal.storage.blobs import delete_blobs

    delete_blobs(keys)
    # The backup still has the ciphertext, but no longer the key that opens it.
    assert get_repository().read_key(admin.organization_id, uid) is None

    job = _restore(client, setup["token"], row["id"], {"file_id": victim.id})
    wait()
    status = client.get(f"/api/v1/restaurations/{job['id']}", headers=bearer(setup["token"])).get_json()
    assert status["counts"]["skipped_purged"] == 1 and status["counts"]["restored"] == 0
    skipped = status["skipped"][0]
    assert skipped["file_id"] == victim.id and skipped["name"] == "releve.txt"
    assert skipped["purged_at"] and skipped["purged_by"] == admin.name
    assert db.session.get(File, victim.id).purged_at is not None


def test_a_corrupted_backup_changes_nothing(app, client, admin, setup, wait):
    row = _backup(client, setup["token"])
    wait()
    file = setup["files"][0]
    uploads.add_version(Actor(admin.organization_id, admin.id), file, None, iter([b"nouveau\n"]), 8)
    db.session.commit()
    body = read_contents(db.session.get(Backup, row["id"]).path)
    victim = next(v["object"] for v in body["versions"] if v["file_id"] == file.id)
    damage_object(victim, flip_byte(0))
    before = db.session.execute(select(FileVersion.id)).scalars().all()
    job = _restore(client, setup["token"], row["id"], {"file_id": file.id})
    wait()
    restore = db.session.get(Restore, job["id"])
    assert restore.status == "echouee" and victim in restore.error
    assert db.session.execute(select(FileVersion.id)).scalars().all() == before
    assert db.session.get(File, file.id).current_version.number == 2


def test_backups_are_admin_only_and_per_organisation(
    app, client, admin, reader_client, reader, make_token, make_user, make_org, setup, wait
):
    row = _backup(client, setup["token"])
    wait()
    assert reader_client.get("/sauvegardes").status_code == 403
    reader_token = make_token(reader)
    assert client.get("/api/v1/sauvegardes", headers=bearer(reader_token)).status_code == 403
    assert client.post("/api/v1/sauvegardes", headers=bearer(reader_token)).status_code == 403
    assert "security.forbidden" in _actions(admin.organization_id)
    other = make_user("admin", org=make_org("Autre"))
    other_token = make_token(other)
    assert client.get(f"/api/v1/sauvegardes/{row['id']}", headers=bearer(other_token)).status_code == 404
    response = client.post(
        f"/api/v1/sauvegardes/{row['id']}/restaurer", json={"all": True}, headers=bearer(other_token)
    )
    assert response.status_code == 404
    bad = client.post(
        f"/api/v1/sauvegardes/{row['id']}/restaurer", json={"file_id": "x"}, headers=bearer(setup["token"])
    )
    assert bad.status_code == 422
    listed = client.get("/api/v1/sauvegardes", headers=bearer(setup["token"])).get_json()
    assert [item["id"] for item in listed["items"]] == [row["id"]]
