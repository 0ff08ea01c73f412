"""Versions, rename, move, trash, restore, purge (crypto-shredding), retention job, rotation, check-storage."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.crypto.errors import KeyShredded
from portal.crypto.models import DataKey, ShredRecord
from portal.database import utcnow
from portal.documents.cli import documents_cli
from portal.documents.models import File, FileVersion, Folder
from portal.documents.services import demo, folders, trash, uploads, versions
from portal.extensions import db
from portal.storage.blobs import get_blob_store
from tests.conftest import csrf
from tests.documents.conftest import blob_files, last_file, multipart, post_multipart, upload


def actions() -> list[str]:
    return [e.action for e in db.session.execute(db.select(AuditEntry).order_by(AuditEntry.id)).scalars()]


def add_version(client, file, content: bytes, comment: str = "", token=None):
    token = token or csrf(client, f"/fichiers/{file.id}")
    body = multipart([("csrf_token", token), ("comment", comment)], [("file", file.name, content)])
    return post_multipart(client, f"/fichiers/{file.id}/version", body)


def test_versions_never_overwrite_and_restore_creates_a_new_one(contributor_client, armoire):
    v1, v2 = b"premiere version " * 100, b"deuxieme version " * 200
    upload(contributor_client, armoire.id, "contrat.txt", v1)
    file = last_file()
    response = add_version(contributor_client, file, v2, "corrections")
    assert response.status_code == 303
    db.session.refresh(file)
    keys = [v.storage_key for v in versions.list_versions(file)]
    assert len(set(keys)) == 2
    assert contributor_client.get(f"/fichiers/{file.id}/telecharger").data == v2
    assert contributor_client.get(f"/fichiers/{file.id}/telecharger?version=1").data == v1

    fragment = contributor_client.get(f"/fichiers/{file.id}/versions", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    text = fragment.get_data(as_text=True)
    assert "<html" not in text and "corrections" in text

    token = csrf(contributor_client, f"/fichiers/{file.id}")
    response = contributor_client.post(f"/fichiers/{file.id}/versions/1/restaurer", data={"csrf_token": token})
    assert response.status_code == 303
    history = versions.list_versions(file)
    assert [v.number for v in history] == [3, 2, 1]
    assert history[0].restored_from_version == 1
    assert history[0].sha256 == history[2].sha256
    assert len({v.storage_key for v in history}) == 3
    assert len({v.data_key_id for v in history}) == 3
    assert contributor_client.get(f"/fichiers/{file.id}/telecharger").data == v1
    assert contributor_client.get(f"/fichiers/{file.id}/telecharger?version=2").data == v2
    assert {"file.added", "file.modified", "version.restored"} <= set(actions())


def test_rename_and_move(contributor_client, contributor, armoire):
    upload(contributor_client, armoire.id, "brouillon.txt", b"x")
    file = last_file()
    folder = folders.create_folder(Actor(contributor.organization_id, contributor.id), armoire, None, "Factures")
    db.session.commit()
    token = csrf(contributor_client, f"/fichiers/{file.id}")
    assert (
        contributor_client.post(
            f"/fichiers/{file.id}/renommer", data={"csrf_token": token, "name": "Facture n°12.txt"}
        ).status_code
        == 303
    )
    assert (
        contributor_client.post(
            f"/fichiers/{file.id}/deplacer", data={"csrf_token": token, "destination": f"{armoire.id}:{folder.id}"}
        ).status_code
        == 303
    )
    db.session.refresh(file)
    assert (file.name, file.folder_id) == ("Facture n°12.txt", folder.id)
    listing = contributor_client.get(f"/armoires/{armoire.id}/dossiers/{folder.id}").get_data(as_text=True)
    assert "Facture n°12.txt" in listing
    assert {"file.renamed", "file.moved"} <= set(actions())
    bad = contributor_client.post(f"/fichiers/{file.id}/renommer", data={"csrf_token": token, "name": "  "})
    assert bad.status_code == 422


def test_trash_restore_and_purge_leave_nothing_decryptable(contributor_client, admin_client, armoire, storage_dir, app):
    secret = b"contenu a detruire " * 1000
    upload(contributor_client, armoire.id, "a détruire.txt", secret)
    file = last_file()
    add_version(contributor_client, file, secret + b"v2")
    stored = versions.list_versions(file)
    data_key_ids = [v.data_key_id for v in stored]
    blobs_before = {p.name: p.read_bytes() for p in blob_files(storage_dir)}
    wrapped_before = {k.id: k.wrapped_key for k in db.session.execute(db.select(DataKey)).scalars()}
    assert len(blobs_before) == 2

    token = csrf(contributor_client, f"/fichiers/{file.id}")
    assert contributor_client.post(f"/fichiers/{file.id}/supprimer", data={"csrf_token": token}).status_code == 303
    assert contributor_client.get(f"/fichiers/{file.id}").status_code == 404
    trash_page = contributor_client.get("/corbeille").get_data(as_text=True)
    assert "a détruire.txt" in trash_page and "Détruire" not in trash_page  # contributors cannot purge
    assert contributor_client.post(f"/corbeille/{file.id}/detruire", data={"csrf_token": token}).status_code == 403
    assert contributor_client.post(f"/corbeille/{file.id}/restaurer", data={"csrf_token": token}).status_code == 303
    assert contributor_client.get(f"/fichiers/{file.id}/telecharger").data == secret + b"v2"

    assert contributor_client.post(f"/fichiers/{file.id}/supprimer", data={"csrf_token": token}).status_code == 303
    admin_token = csrf(admin_client, "/corbeille")
    assert admin_client.post(f"/corbeille/{file.id}/detruire", data={"csrf_token": admin_token}).status_code == 303

    assert blob_files(storage_dir) == []
    if db.engine.dialect.name == "sqlite":
        # The purge checkpoints and truncates the WAL: no page of the .db or -wal file
        # (secure_delete zeroes freed cells) still holds a wrapped key.
        database = Path(db.engine.url.database)
        files = [database, database.with_name(database.name + "-wal")]
        for path in files:
            content = path.read_bytes() if path.exists() else b""
            for wrapped in wrapped_before.values():
                assert wrapped not in content, path
    for key_id in data_key_ids:
        key = db.session.get(DataKey, key_id)
        assert key.wrapped_key is None and key.shredded_at is not None
    ledger = db.session.execute(db.select(ShredRecord)).scalars().all()
    assert sorted(r.data_key_id for r in ledger) == sorted(data_key_ids)
    db.session.refresh(file)
    assert file.purged_at is not None
    assert admin_client.get(f"/corbeille/{file.id}/restaurer").status_code in (404, 405)
    assert admin_client.post(f"/corbeille/{file.id}/restaurer", data={"csrf_token": admin_token}).status_code == 404
    assert "file.purged" in actions()

    # A copy of the storage and of the database taken before the purge is useless once
    # the ledger is applied: the wrapped keys it names are destroyed again.
    from portal.crypto.envelope import apply_shred_ledger, open_data_key

    for key_id, wrapped in wrapped_before.items():
        db.session.execute(db.update(DataKey).where(DataKey.id == key_id).values(wrapped_key=wrapped, shredded_at=None))
    db.session.commit()
    assert apply_shred_ledger() >= len(data_key_ids)
    db.session.commit()
    for version in stored:
        key = db.session.get(DataKey, version.data_key_id)
        db.session.refresh(key)
        assert key.wrapped_key is None and key.shredded_at is not None
        with pytest.raises(KeyShredded):
            open_data_key(key, key.context)


def test_retention_job_purges_only_expired_files(contributor_client, armoire, app, storage_dir):
    from portal.documents.jobs import purge_trash_now

    upload(contributor_client, armoire.id, "vieux.txt", b"vieux")
    old = last_file()
    upload(contributor_client, armoire.id, "recent.txt", b"recent")
    recent = last_file()
    actor = Actor(old.organization_id, None)
    trash.trash_file(actor, old)
    trash.trash_file(actor, recent)
    old.deleted_at = utcnow() - timedelta(days=31)
    db.session.commit()
    assert purge_trash_now() == 1
    db.session.refresh(old)
    db.session.refresh(recent)
    assert old.purged_at is not None and recent.purged_at is None
    assert len(blob_files(storage_dir)) == 1
    entry = db.session.execute(db.select(AuditEntry).where(AuditEntry.action == "file.purged")).scalar_one()
    assert entry.user_id is None and entry.target_label == "vieux.txt"
    runner = app.test_cli_runner()
    result = runner.invoke(documents_cli, ["purge-trash"])
    assert result.exit_code == 0 and "0 blob" in result.output


def test_master_key_rotation_keeps_files_readable(contributor_client, armoire, app):
    from portal.crypto.cli import keys_group

    contents = [os.urandom(1000 + i) for i in range(3)]
    ids = []
    for i, content in enumerate(contents):
        upload(contributor_client, armoire.id, f"f{i}.bin", content)
        ids.append(last_file().id)
    before = {k.id: k.master_key_id for k in db.session.execute(db.select(DataKey)).scalars()}
    db.session.commit()
    result = app.test_cli_runner().invoke(keys_group, ["rotate"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    after = {k.id: k.master_key_id for k in db.session.execute(db.select(DataKey)).scalars()}
    assert all(after[k] != before[k] for k in before)
    for file_id, content in zip(ids, contents, strict=True):
        assert contributor_client.get(f"/fichiers/{file_id}/telecharger").data == content


def test_check_storage_reports_and_fixes_both_ways(contributor_client, armoire, app, storage_dir):
    upload(contributor_client, armoire.id, "garde.txt", b"garde")
    kept = last_file()
    upload(contributor_client, armoire.id, "perdu.txt", b"perdu")
    lost = last_file()
    store = get_blob_store()
    lost_version = db.session.get(FileVersion, lost.current_version_id)
    store.delete(lost_version.storage_key)
    with store.create() as pending:
        pending.file.write(b"orphelin")
    orphan = pending.key
    db.session.commit()
    runner = app.test_cli_runner()
    report = runner.invoke(documents_cli, ["check-storage", "--grace-seconds", "0"])
    assert report.exit_code == 1
    assert f"orphan blob: {orphan}" in report.output
    assert f"missing blob: file {lost.id} version 1" in report.output
    assert store.exists(orphan)
    fixed = runner.invoke(documents_cli, ["check-storage", "--fix", "--grace-seconds", "0"])
    assert fixed.exit_code == 0, fixed.output
    assert not store.exists(orphan)
    db.session.expire_all()
    assert db.session.get(File, lost.id).unavailable is True  # flagged, never deleted
    assert db.session.get(FileVersion, lost_version.id).blob_missing is True
    assert contributor_client.get(f"/fichiers/{lost.id}/telecharger").status_code == 409
    assert contributor_client.get(f"/fichiers/{kept.id}/telecharger").data == b"garde"
    # A fresh blob may be an upload waiting for its commit: not touched within the grace period.
    with store.create() as pending:
        pending.file.write(b"en vol")
    assert runner.invoke(documents_cli, ["check-storage", "--fix"]).exit_code == 0
    assert store.exists(pending.key)


def test_armoire_management(admin_client, contributor_client, armoire):
    token = csrf(admin_client, "/armoires")
    response = admin_client.post("/armoires", data={"csrf_token": token, "name": "Juridique"})
    assert response.status_code == 303
    assert admin_client.post("/armoires", data={"csrf_token": token, "name": "juridique"}).status_code == 409
    assert (
        admin_client.post(f"/armoires/{armoire.id}/renommer", data={"csrf_token": token, "name": "Compta"}).status_code
        == 303
    )
    upload(contributor_client, armoire.id, "x.txt", b"x")
    assert admin_client.post(f"/armoires/{armoire.id}/supprimer", data={"csrf_token": token}).status_code == 409
    new = db.session.execute(db.select(Folder)).first()
    assert new is None
    page = admin_client.get("/armoires").get_data(as_text=True)
    assert "Compta" in page and "Juridique" in page
    assert {"armoire.created", "armoire.renamed"} <= set(actions())


def test_listing_sort_search_pagination_and_empty_state(contributor_client, armoire):
    empty = contributor_client.get(f"/armoires/{armoire.id}").get_data(as_text=True)
    assert "Ce dossier est vide." in empty and "Créer un dossier" in empty
    for i in range(30):
        upload(contributor_client, armoire.id, f"doc-{i:02d}.txt", b"x" * (i + 1))
    page1 = contributor_client.get(f"/armoires/{armoire.id}?tri=-size", headers={"HX-Request": "true"})
    text = page1.get_data(as_text=True)
    assert "<html" not in text and 'id="file-list"' in text
    assert text.index("doc-29.txt") < text.index("doc-28.txt")
    assert "doc-00.txt" not in text  # on page 2
    page2 = contributor_client.get(f"/armoires/{armoire.id}?tri=-size&page=2").get_data(as_text=True)
    assert "doc-00.txt" in page2
    found = contributor_client.get(f"/armoires/{armoire.id}?q=doc-1").get_data(as_text=True)
    assert "doc-15.txt" in found and "doc-25.txt" not in found
    none = contributor_client.get(f"/armoires/{armoire.id}?q=%25zz_").get_data(as_text=True)
    assert "Aucun fichier ne correspond" in none


def test_parallel_new_versions_get_unique_numbers(app, contributor_client, contributor, armoire):
    import threading

    from portal.database import write_transaction

    upload(contributor_client, armoire.id, "partagé.txt", b"v1")
    file_id = last_file().id
    actor = Actor(contributor.organization_id, contributor.id)
    db.session.commit()
    outcomes: list[object] = []

    def send(i: int) -> None:
        # Each thread has its own app context, hence its own session and connection; outside a
        # request, write_transaction makes SQLite begin IMMEDIATE as a POST would.
        with app.app_context(), write_transaction():
            try:
                file = db.session.get(File, file_id)
                version = uploads.add_version(actor, file, "v.txt", [f"version {i}".encode()], None)
                db.session.commit()
                outcomes.append(version.number)
            except Exception as error:  # reported below with the others
                db.session.rollback()
                outcomes.append(error)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(n, int) for n in outcomes), outcomes
    assert sorted(outcomes) == list(range(2, 22))
    db.session.rollback()
    numbers = sorted(v.number for v in versions.list_versions(db.session.get(File, file_id)))
    assert numbers == list(range(1, 22))


def test_seed_demo_documents_creates_readable_previewable_files(contributor_client, contributor, armoire):
    files = demo.seed_demo_documents(contributor.organization_id, contributor.id)
    db.session.commit()
    types = {f.name: f.mime_type for f in files}
    assert types == {
        "Bienvenue dans Coffre.txt": "text/plain",
        "Procès-verbal AG 2026.pdf": "application/pdf",
        "Logo.png": "image/png",
    }
    pdf = next(f for f in files if f.mime_type == "application/pdf")
    page = contributor_client.get(f"/fichiers/{pdf.id}").get_data(as_text=True)
    assert f'src="/fichiers/{pdf.id}/apercu"' in page  # sandboxed by the response CSP below
    preview = contributor_client.get(f"/fichiers/{pdf.id}/apercu")
    assert preview.status_code == 200 and preview.data.startswith(b"%PDF-1.4")
    assert preview.headers["Content-Security-Policy"].startswith("sandbox")
