"""The runbook of docs/operations.md, end to end: export, purge, wipe instance/, restore, serve."""

from __future__ import annotations

import shutil

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import trash, uploads
from portal.extensions import db
from portal.storage.blobs import delete_blobs
from tests.conftest import TEST_PASSWORD, _empty_tables, csrf


def _purge(actor, file_id: int) -> None:
    trash.trash_file(actor, db.session.get(File, file_id))
    db.session.commit()
    keys = trash.purge_file(actor, db.session.get(File, file_id))
    db.session.commit()
    delete_blobs(keys)


def test_runbook_export_wipe_restore(app_factory, tmp_path, make_armoire):
    secrets = tmp_path / "secrets"  # kept apart from instance/, as the runbook says
    app = app_factory(
        COFFRE_MASTER_KEY_FILE=str(secrets / "master.key"),
        COFFRE_JOURNAL_KEY_FILE=str(secrets / "journal_signing.key"),
        COFFRE_SHRED_LEDGER_FILE=str(secrets / "shred-ledger.jsonl"),
    )
    instance = tmp_path / "instance"
    export = tmp_path / "export"
    with app.app_context():
        from portal.auth.models import User
        from portal.organizations.models import Organization
        from portal.security.passwords import hash_password

        org = Organization(name="Cabinet", require_2fa=False)
        db.session.add(org)
        db.session.commit()
        admin = User(
            organization_id=org.id,
            email="dr@example.test",
            name="Admin",
            role="admin",
            password_hash=hash_password(TEST_PASSWORD),
        )
        db.session.add(admin)
        db.session.commit()
        actor = Actor(org.id, admin.id)
        armoire = make_armoire(org)
        ids = {}
        for name in ("garde.txt", "avant.txt", "apres.txt"):
            version = uploads.store_upload(actor, armoire, None, name, iter([f"contenu {name}\n".encode()]), None)
            db.session.commit()
            ids[name] = version.file_id
        _purge(actor, ids["avant.txt"])  # purged before the export
        runner = app.test_cli_runner()
        result = runner.invoke(args=["backups", "export-all", str(export)])
        assert result.exit_code == 0, result.output
        _purge(actor, ids["apres.txt"])  # purged after the export: the export still has its key

        # Disaster: instance/ and the database are gone; the secrets directory survived.
        db.session.remove()
        _empty_tables()
        shutil.rmtree(instance)

        # A byte changed in the export is refused before anything is written.
        victim = next((export / "db").glob("fichiers.jsonl"))
        original = victim.read_bytes()
        victim.write_bytes(original.replace(b"garde.txt", b"gardE.txt"))
        refused = runner.invoke(args=["backups", "restore-all", str(export)])
        assert refused.exit_code != 0 and "fichiers.jsonl" in refused.output
        victim.write_bytes(original)

        result = runner.invoke(args=["backups", "restore-all", str(export)])
        assert result.exit_code == 0, result.output
        assert "1 data keys destroyed again" in result.output

        client = app.test_client()
        token = csrf(client, "/auth/login")
        login = client.post(
            "/auth/login", data={"csrf_token": token, "email": "dr@example.test", "password": TEST_PASSWORD}
        )
        assert login.status_code in (302, 303), login.get_data(as_text=True)[:500]
        download = client.get(f"/fichiers/{ids['garde.txt']}/telecharger")
        assert download.status_code == 200 and download.data == b"contenu garde.txt\n"
        for name in ("avant.txt", "apres.txt"):
            assert client.get(f"/fichiers/{ids[name]}/telecharger").status_code in (404, 409, 410)
        db.session.expire_all()
        from portal.crypto.models import DataKey
        from portal.documents.models import FileVersion

        wrapped = db.session.execute(
            db.select(File.name, DataKey.wrapped_key)
            .join(FileVersion, FileVersion.file_id == File.id)
            .join(DataKey, DataKey.id == FileVersion.data_key_id)
        ).all()
        # apres.txt's key came back with the export and was destroyed again by the ledger.
        assert {name for name, key in wrapped if key is not None} == {"garde.txt"}
        assert "apres.txt" in {name for name, _key in wrapped}
        verify = runner.invoke(args=["journal", "verify"])
        assert verify.exit_code == 0, verify.output
        db.session.remove()
