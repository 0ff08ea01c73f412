"""Envelope services on the real database: data keys, shredding, the shred ledger,
master key rotation and the `keys` CLI."""

from __future__ import annotations

import base64
import json
import os

import pytest
from sqlalchemy import select

from portal.crypto import cli as keys_cli
from portal.crypto import envelope
from portal.crypto.errors import KeyConfigError, KeyShredded, KeyUnavailable, LedgerUnavailable
from portal.crypto.models import DataKey, ShredRecord
from portal.extensions import db


def context(org_id: int, file_id: int, version_id: int) -> dict[str, str]:
    return {"org": str(org_id), "file": str(file_id), "version": str(version_id)}


def make_keys(org_id: int, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    made = []
    for n in range(1, count + 1):
        ctx = context(org_id, n, n * 10)
        row, key = envelope.new_data_key(org_id, ctx)
        made.append((row.id, ctx, key))
    db.session.commit()
    return made


def test_new_and_open_data_key(app, org) -> None:
    ctx = context(org.id, 1, 1)
    row, key = envelope.new_data_key(org.id, ctx)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(DataKey, row.id)
    assert stored.wrapped_key and key not in stored.wrapped_key
    assert stored.master_key_id == "local:1" and stored.context == ctx and len(stored.uid) == 32
    assert envelope.open_data_key(stored, ctx) == key
    with pytest.raises(KeyUnavailable):
        envelope.open_data_key(stored, context(org.id, 1, 2))


def test_context_naming_another_org_is_refused(app, org) -> None:
    with pytest.raises(ValueError):
        envelope.new_data_key(org.id, context(org.id + 1, 1, 1))


def test_wrong_master_key_file_fails_cleanly(app_factory, make_org, tmp_path) -> None:
    app = app_factory()
    with app.app_context():
        org_id = make_org().id
        row, _key = envelope.new_data_key(org_id, context(org_id, 1, 1))
        db.session.commit()
        row_id = row.id
    other = app_factory(COFFRE_MASTER_KEY_FILE=str(tmp_path / "other" / "master.key"))
    with other.app_context(), pytest.raises(KeyUnavailable, match="wrong master key"):
        envelope.open_data_key(db.session.get(DataKey, row_id), context(org_id, 1, 1))


def test_shredded_key_cannot_be_opened_and_is_logged(app, org) -> None:
    ctx = context(org.id, 5, 50)
    row, _key = envelope.new_data_key(org.id, ctx)
    db.session.commit()
    envelope.shred_data_key(row, file_id=5, version_id=50, reason="file.purged")
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(DataKey, row.id)
    assert stored.wrapped_key is None and stored.shredded_at is not None
    with pytest.raises(KeyShredded):
        envelope.open_data_key(stored, ctx)
    record = db.session.execute(select(ShredRecord)).scalar_one()
    assert (record.data_key_id, record.data_key_uid, record.file_id, record.version_id, record.reason) == (
        row.id,
        row.uid,
        5,
        50,
        "file.purged",
    )
    lines = envelope.read_ledger_file()
    assert [line["uid"] for line in lines] == [row.uid]


def test_rolled_back_shred_keeps_the_key_but_not_its_ledger_line(app, org) -> None:
    """The file entry is written before the commit and cannot be taken back: the ledger errs
    toward destruction (a later apply-ledger destroys the key), never toward forgetting."""
    row, key = envelope.new_data_key(org.id, context(org.id, 1, 1))
    db.session.commit()
    envelope.shred_data_key(row, file_id=1, version_id=1, reason="file.purged")
    db.session.rollback()
    assert [line["uid"] for line in envelope.read_ledger_file()] == [row.uid]
    assert db.session.execute(select(ShredRecord)).first() is None
    assert envelope.open_data_key(db.session.get(DataKey, row.id), context(org.id, 1, 1)) == key


def test_shred_with_an_unwritable_ledger_destroys_nothing(app, org) -> None:
    row, key = envelope.new_data_key(org.id, context(org.id, 1, 1))
    db.session.commit()
    envelope.shred_ledger_path().parent.mkdir(parents=True, exist_ok=True)
    envelope.shred_ledger_path().mkdir()  # open() fails for real, even as root
    with pytest.raises(LedgerUnavailable, match="cannot be written"):
        envelope.shred_data_key(row, file_id=1, version_id=1, reason="file.purged")
    assert row.wrapped_key is not None and row.shredded_at is None  # untouched, even unflushed
    db.session.commit()
    assert db.session.execute(select(ShredRecord)).first() is None
    assert envelope.open_data_key(db.session.get(DataKey, row.id), context(org.id, 1, 1)) == key


def test_a_restored_backup_cannot_bring_a_shredded_key_back(app, org) -> None:
    """Simulate a backup taken before the purge: the wrapped key and an older ledger come back."""
    (kept_id, kept_ctx, kept_key), (gone_id, gone_ctx, _gone) = make_keys(org.id, 2)
    gone = db.session.get(DataKey, gone_id)
    backup = {"wrapped_key": gone.wrapped_key, "master_key_id": gone.master_key_id}
    envelope.shred_data_key(gone, file_id=2, version_id=20, reason="file.purged")
    db.session.commit()

    # The "restore": the row comes back wrapped, and the database ledger predates the purge.
    db.session.execute(ShredRecord.__table__.delete())
    db.session.execute(
        DataKey.__table__.update()
        .where(DataKey.id == gone_id)
        .values(wrapped_key=backup["wrapped_key"], shredded_at=None)
    )
    db.session.commit()
    db.session.expire_all()
    assert envelope.open_data_key(db.session.get(DataKey, gone_id), gone_ctx)  # what the backup would allow

    assert envelope.apply_shred_ledger() == 1
    db.session.commit()
    db.session.expire_all()
    with pytest.raises(KeyShredded):
        envelope.open_data_key(db.session.get(DataKey, gone_id), gone_ctx)
    assert envelope.open_data_key(db.session.get(DataKey, kept_id), kept_ctx) == kept_key
    assert db.session.execute(select(ShredRecord.data_key_uid)).scalar_one() == db.session.get(DataKey, gone_id).uid
    # Idempotent.
    assert envelope.apply_shred_ledger() == 0


def test_ledger_names_keys_by_uid_not_by_reused_ids(app, org) -> None:
    """After a restore resets the id sequence, a new key with a purged key's id stays alive."""
    ((_id, _ctx, _key),) = make_keys(org.id, 1)
    row = db.session.get(DataKey, _id)
    envelope.shred_data_key(row, file_id=1, version_id=10, reason="file.purged")
    db.session.commit()
    db.session.execute(ShredRecord.__table__.delete())
    db.session.execute(DataKey.__table__.delete())
    db.session.commit()
    ((new_id, new_ctx, new_key),) = make_keys(org.id, 1)
    assert envelope.apply_shred_ledger() == 0
    db.session.commit()
    assert envelope.open_data_key(db.session.get(DataKey, new_id), new_ctx) == new_key


def test_ledger_file_is_rebuilt_from_the_database(app, org) -> None:
    ((row_id, _ctx, _key),) = make_keys(org.id, 1)
    envelope.shred_data_key(db.session.get(DataKey, row_id), file_id=1, version_id=10, reason="file.purged")
    db.session.commit()
    path = envelope.shred_ledger_path()
    path.unlink()
    path.write_bytes(b'{"uid": "torn')  # a crash mid-append must not stop a restore
    assert envelope.apply_shred_ledger() == 0
    assert [line["uid"] for line in envelope.read_ledger_file()] == [db.session.get(DataKey, row_id).uid]


def test_rotation_rewraps_every_key_and_all_stay_readable(app, org) -> None:
    keys = make_keys(org.id, 7)
    envelope.shred_data_key(db.session.get(DataKey, keys[3][0]), file_id=4, version_id=40, reason="file.purged")
    db.session.commit()
    before = {row.id: row.wrapped_key for row in db.session.execute(select(DataKey)).scalars()}

    assert envelope.rotate_master_key() == "local:2"
    # Readable between rotation and rewrap: the old version is still in the keyring.
    for row_id, ctx, key in keys[:3]:
        assert envelope.open_data_key(db.session.get(DataKey, row_id), ctx) == key
    batches: list[int] = []
    assert envelope.rewrap_all(batch_size=2, on_batch=lambda n: (batches.append(n), db.session.commit())) == 6
    assert batches == [2, 2, 2]
    db.session.expire_all()
    for row_id, ctx, key in keys:
        row = db.session.get(DataKey, row_id)
        if row_id == keys[3][0]:
            assert row.wrapped_key is None  # rotation never brings a shredded key back
            continue
        assert row.master_key_id == "local:2" and row.wrapped_key != before[row_id]
        assert envelope.open_data_key(row, ctx) == key
    with pytest.raises(KeyConfigError, match="primary"):
        envelope.retire_master_key(2)
    envelope.retire_master_key(1)
    for row_id, ctx, key in keys[:3]:
        assert envelope.open_data_key(db.session.get(DataKey, row_id), ctx) == key
    assert envelope.rewrap_all() == 0


def test_retire_is_refused_while_keys_use_the_version(app, org) -> None:
    make_keys(org.id, 2)
    envelope.rotate_master_key()
    with pytest.raises(KeyConfigError, match="still wraps 2 data keys"):
        envelope.retire_master_key(1)


def test_rotation_refused_with_an_environment_key(app_factory, make_org) -> None:
    app = app_factory(COFFRE_MASTER_KEY=base64.b64encode(os.urandom(32)).decode())
    with app.app_context(), pytest.raises(KeyConfigError, match="cannot be rotated"):
        envelope.rotate_master_key()


def test_cli_rotate_status_retire_and_apply_ledger(app, org) -> None:
    keys_cli.init_app(app)
    keys = make_keys(org.id, 3)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["keys", "rotate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "New primary master key: local:2" in result.output and "Rewrapped 3 data keys" in result.output

    status = json.loads(runner.invoke(args=["keys", "status"]).output)
    assert status["primary"] == "local:2" and status["live_keys"] == {"local:2": 3}
    assert status["keyring"] == {"primary": 2, "active": [1, 2], "retired": []}

    result = runner.invoke(args=["keys", "retire", "2"])
    assert result.exit_code != 0 and "primary" in result.output
    result = runner.invoke(args=["keys", "retire", "1"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    for row_id, ctx, key in keys:
        assert envelope.open_data_key(db.session.get(DataKey, row_id), ctx) == key

    result = runner.invoke(args=["keys", "apply-ledger"])
    assert result.exit_code == 0 and "0 data keys destroyed" in result.output


def test_cli_journals_key_operations_once_the_actions_exist(app, org, monkeypatch) -> None:
    from portal.audit import actions
    from portal.audit import services as audit_services
    from portal.audit.models import AuditEntry

    codes = actions.ACTIONS | {"keys.rotated", "keys.retired", "keys.ledger_applied"}
    monkeypatch.setattr(actions, "ACTIONS", codes)
    monkeypatch.setattr(audit_services, "ACTIONS", codes)
    keys_cli.init_app(app)
    make_keys(org.id, 1)
    runner = app.test_cli_runner()
    for args in (["keys", "rotate"], ["keys", "retire", "1"], ["keys", "apply-ledger"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    entries = db.session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
    assert [(entry.action, entry.details) for entry in entries] == [
        ("keys.rotated", {"primary": "local:2", "rewrapped": 1, "not_rewrapped": 0}),
        ("keys.retired", {"version": 1}),
        ("keys.ledger_applied", {"destroyed": 0}),
    ]
