"""The shred ledger fails closed (issue 10, B5): a purge's ledger entries are on disk,
fsynced, before its commit, and a purge whose entries cannot be written is refused with the
file left in the trash, on the web and in the scheduled retention purge."""

from __future__ import annotations

import logging
from datetime import timedelta

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.crypto import envelope
from portal.crypto.models import DataKey, ShredRecord
from portal.database import utcnow
from portal.documents.jobs import purge_trash_now
from portal.documents.models import File, FileVersion
from portal.documents.services import trash, uploads
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import blob_files, last_file, upload


def block_ledger() -> None:
    """A directory where the ledger file should be: open() fails for real, even as root."""
    path = envelope.shred_ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()


def unblock_ledger() -> None:
    envelope.shred_ledger_path().rmdir()


def live_key_uids(file_id: int) -> list[str]:
    return list(
        db.session.execute(
            db.select(DataKey.uid)
            .join(FileVersion, FileVersion.data_key_id == DataKey.id)
            .where(FileVersion.file_id == file_id, DataKey.wrapped_key.is_not(None))
            .order_by(DataKey.id)
        ).scalars()
    )


def trashed_file(client, armoire, name: str, contents: list[bytes]) -> File:
    assert upload(client, armoire.id, name, contents[0]).status_code in (201, 303)
    file = last_file()
    for content in contents[1:]:
        uploads.add_version(Actor(file.organization_id, None), file, name, [content], len(content))
    trash.trash_file(Actor(file.organization_id, None), file)
    db.session.commit()
    return file


def test_web_purge_is_refused_when_the_ledger_cannot_be_written(admin_client, armoire, storage_dir):
    file = trashed_file(admin_client, armoire, "à détruire.txt", [b"un", b"deux"])
    file_id = file.id
    uids = live_key_uids(file_id)
    assert len(uids) == 2
    block_ledger()
    token = csrf(admin_client, "/corbeille")

    response = admin_client.post(f"/corbeille/{file_id}/detruire", data={"csrf_token": token})

    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "pas été détruit" in page and "reste dans la corbeille" in page
    assert "détruit définitivement" not in page
    db.session.rollback()
    file = db.session.get(File, file_id)
    assert file.deleted_at is not None and file.purged_at is None
    assert live_key_uids(file_id) == uids
    assert db.session.execute(db.select(ShredRecord)).first() is None
    assert db.session.execute(db.select(AuditEntry).where(AuditEntry.action == "file.purged")).first() is None
    assert len(blob_files(storage_dir)) == 2
    assert "à détruire.txt" in admin_client.get("/corbeille").get_data(as_text=True)

    # Once the ledger is writable again the same purge goes through and is on record.
    unblock_ledger()
    response = admin_client.post(f"/corbeille/{file_id}/detruire", data={"csrf_token": token})
    assert response.status_code == 303
    assert sorted(line["uid"] for line in envelope.read_ledger_file()) == sorted(uids)
    assert blob_files(storage_dir) == []


def test_the_ledger_names_the_keys_before_the_purge_commits(admin_client, armoire):
    """A backup taken at any moment after the commit finds the entries on disk: they are
    written and fsynced by the purge itself, not by a hook after the commit."""
    file = trashed_file(admin_client, armoire, "registre.txt", [b"a", b"b", b"c"])
    uids = live_key_uids(file.id)
    trash.purge_file(Actor(file.organization_id, None), file)
    assert sorted(line["uid"] for line in envelope.read_ledger_file()) == sorted(uids)
    db.session.commit()
    assert sorted(line["uid"] for line in envelope.read_ledger_file()) == sorted(uids)  # no duplicate lines


def test_retention_purge_skips_files_it_cannot_record_and_does_not_crash(admin_client, armoire, storage_dir, caplog):
    old = trashed_file(admin_client, armoire, "ancien.txt", [b"ancien"])
    older = trashed_file(admin_client, armoire, "plus ancien.txt", [b"plus", b"ancien"])
    for file in (old, older):
        file.deleted_at = utcnow() - timedelta(days=400)
    db.session.commit()
    ids = [old.id, older.id]
    block_ledger()

    with caplog.at_level(logging.ERROR, logger="portal.documents.services.trash"):
        assert purge_trash_now() == 0

    assert sum("not purged" in record.getMessage() for record in caplog.records) == 2
    db.session.rollback()
    for file_id in ids:
        file = db.session.get(File, file_id)
        assert file.deleted_at is not None and file.purged_at is None
        assert live_key_uids(file_id)
    assert db.session.execute(db.select(ShredRecord)).first() is None
    assert len(blob_files(storage_dir)) == 3

    unblock_ledger()
    assert purge_trash_now() == 3
    db.session.rollback()
    assert all(db.session.get(File, file_id).purged_at is not None for file_id in ids)
    assert len(envelope.read_ledger_file()) == 3
