"""Same transaction, concurrent writers, and verification of tampered chains."""

from __future__ import annotations

import json
import stat
import threading

import pytest
import sqlalchemy as sa

from portal.audit import checkpoints
from portal.audit.context import Actor
from portal.audit.models import AuditChainHead, AuditEntry
from portal.audit.services import GENESIS_HASH, canonical_content, compute_hash, record
from portal.audit.verification import checkpoint_advanced_chains, verify_chain
from portal.extensions import db
from tests.audit.helpers import add_entries


class _BoomError(RuntimeError):
    pass


def _rename_file_then_fail(org, user) -> None:
    """A service that records its action, then fails before the view commits."""
    record("file.renamed", Actor(org.id, user.id), target_type="file", target_id=1, target_label="a.pdf")
    raise _BoomError


def _count(org_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.organization_id == org_id)
    ).scalar_one()


def test_entry_rolls_back_with_its_action(app, org, admin):
    with pytest.raises(_BoomError):
        _rename_file_then_fail(org, admin)
    db.session.rollback()
    assert _count(org.id) == 0
    head = db.session.get(AuditChainHead, org.id)
    assert head is None or head.seq == 0

    record("file.renamed", Actor(org.id, admin.id), target_type="file", target_id=1, target_label="a.pdf")
    db.session.commit()
    assert _count(org.id) == 1
    assert verify_chain(org.id).ok


def test_concurrent_writers_keep_one_chain(app, org, admin):
    threads, per_thread = 6, 15
    # Plain ids: touching the fixtures' expired ORM objects from a thread would use this thread's session.
    org_id, user_id = org.id, admin.id
    db.session.rollback()  # on SQLite even a read transaction holds the write lock
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(number: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(per_thread):
                    record(
                        "file.added",
                        Actor(org_id, user_id),
                        target_type="file",
                        target_id=number * 1000 + i,
                        target_label=f"t{number}-{i}.pdf",
                    )
                    db.session.commit()
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    db.session.rollback()
    seqs = list(
        db.session.execute(
            sa.select(AuditEntry.seq).where(AuditEntry.chain_id == org.id).order_by(AuditEntry.seq)
        ).scalars()
    )
    assert seqs == list(range(1, threads * per_thread + 1))
    result = verify_chain(org.id)
    assert result.ok, result.problem
    assert result.entries_checked == threads * per_thread


def _tamper(sql: str, **params) -> None:
    db.session.execute(sa.text(sql), params)
    db.session.commit()


def test_intact_chain_verifies_and_writes_a_signed_checkpoint(app, org, admin):
    add_entries(org, admin, 4)
    result = verify_chain(org.id)
    assert result.ok and result.entries_checked == 4
    lines = checkpoints.checkpoint_path().read_text().splitlines()
    assert json.loads(lines[-1])["seq"] == 4
    assert stat.S_IMODE(checkpoints.key_path().stat().st_mode) == 0o600
    assert all(cp.valid_signature for cp in checkpoints.read_checkpoints(org.id))


def test_edited_entry_is_named(app, org, admin):
    entries = add_entries(org, admin, 6)
    _tamper("UPDATE journal_activite SET target_label = 'Autre.pdf' WHERE id = :id", id=entries[2].id)
    result = verify_chain(org.id, checkpoint=False)
    assert not result.ok
    assert (result.problem.kind, result.problem.seq, result.problem.entry_id) == ("altered", 3, entries[2].id)
    assert result.entries_checked == 2


def test_edited_details_are_named(app, org, admin):
    actor = Actor(org.id, admin.id)
    record(
        "user.role_changed", actor, target_type="user", target_id=admin.id, details={"old": "lecteur", "new": "admin"}
    )
    add_entries(org, admin, 2)
    _tamper(
        "UPDATE journal_activite SET details = :d WHERE seq = 1 AND chain_id = :c",
        d='{"old":"x","new":"admin"}',
        c=org.id,
    )
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.seq) == ("altered", 1)


def test_deleted_entry_is_named(app, org, admin):
    entries = add_entries(org, admin, 6)
    _tamper("DELETE FROM journal_activite WHERE id = :id", id=entries[3].id)
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.seq) == ("deleted", 4)
    assert result.problem.entry_id == entries[4].id


def test_inserted_entry_is_named_even_when_its_hashes_are_forged(app, org, admin):
    """An attacker renumbers the tail and slips in a row with a correctly computed hash."""
    entries = add_entries(org, admin, 5)
    for entry in reversed(entries[2:]):
        _tamper("UPDATE journal_activite SET seq = seq + 1 WHERE id = :id", id=entry.id)
    forged = AuditEntry(
        chain_id=org.id,
        seq=3,
        organization_id=org.id,
        user_id=admin.id,
        action="file.deleted",
        target_type="file",
        target_id=99,
        target_label="Preuve.pdf",
        created_at=entries[1].created_at,
        ip=None,
        user_agent=None,
        details=None,
        prev_hash=entries[1].entry_hash,
    )
    forged.entry_hash = compute_hash(
        forged.prev_hash,
        canonical_content(
            chain_id=org.id,
            seq=3,
            organization_id=org.id,
            user_id=admin.id,
            action="file.deleted",
            target_type="file",
            target_id=99,
            target_label="Preuve.pdf",
            created_at=entries[1].created_at,
            ip=None,
            user_agent=None,
            details=None,
        ),
    )
    db.session.add(forged)
    db.session.commit()
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.seq, result.problem.entry_id) == ("inserted", 3, forged.id)


def test_row_appended_behind_the_heads_back_is_named(app, org, admin):
    entries = add_entries(org, admin, 3)
    sqlite = db.engine.dialect.name == "sqlite"
    _tamper(
        "INSERT INTO journal_activite (chain_id, seq, organization_id, action, created_at, prev_hash, entry_hash)"
        " VALUES (:c, 4, :c, 'file.added', :at, :prev, :h)",
        c=org.id,
        at=entries[-1].created_at.replace(tzinfo=None) if sqlite else entries[-1].created_at,
        prev=entries[-1].entry_hash,
        h="f" * 64,
    )
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.seq) == ("inserted", 4)


def test_cut_tail_is_detected_by_the_checkpoint(app, org, admin):
    add_entries(org, admin, 5)
    assert verify_chain(org.id).ok  # anchors seq 5 outside the table
    # A careful attacker removes the newest entries and rewinds the head to match.
    _tamper("DELETE FROM journal_activite WHERE chain_id = :c AND seq > 3", c=org.id)
    third = db.session.execute(
        sa.select(AuditEntry.entry_hash).where(AuditEntry.chain_id == org.id, AuditEntry.seq == 3)
    ).scalar_one()
    _tamper("UPDATE journal_chaines SET seq = 3, head_hash = :h WHERE chain_id = :c", h=third, c=org.id)
    result = verify_chain(org.id)
    assert (result.problem.kind, result.problem.seq) == ("truncated", 4)
    assert result.checkpoint is None  # a broken chain is never anchored


def test_cut_and_regrown_tail_is_detected(app, org, admin):
    add_entries(org, admin, 4)
    assert verify_chain(org.id).ok
    _tamper("DELETE FROM journal_activite WHERE chain_id = :c AND seq > 2", c=org.id)
    second = db.session.execute(
        sa.select(AuditEntry.entry_hash).where(AuditEntry.chain_id == org.id, AuditEntry.seq == 2)
    ).scalar_one()
    _tamper("UPDATE journal_chaines SET seq = 2, head_hash = :h WHERE chain_id = :c", h=second, c=org.id)
    add_entries(org, admin, 3, label="nouveau-{n}.pdf")  # seq 3..5, a valid chain again
    result = verify_chain(org.id)
    assert (result.problem.kind, result.problem.seq) == ("truncated", 4)


def test_cut_tail_without_checkpoint_is_caught_by_the_head(app, org, admin):
    add_entries(org, admin, 4)
    _tamper("DELETE FROM journal_activite WHERE chain_id = :c AND seq = 4", c=org.id)
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.seq) == ("truncated", 4)


def test_forged_checkpoint_signature_is_reported(app, org, admin):
    add_entries(org, admin, 2)
    assert verify_chain(org.id).ok
    path = checkpoints.checkpoint_path()
    line = json.loads(path.read_text().splitlines()[-1])
    line["seq"] = 1
    with path.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    result = verify_chain(org.id)
    assert result.problem.kind == "bad_checkpoint_signature"


def test_scheduled_checkpoint_only_for_chains_that_moved(app, make_org, admin, org):
    other = make_org("Organisation B")
    add_entries(org, admin, 2)
    add_entries(other, None, 1)
    assert checkpoint_advanced_chains().written == 2
    assert checkpoint_advanced_chains().written == 0
    add_entries(org, admin, 1)
    assert checkpoint_advanced_chains().written == 1
    latest = checkpoints.last_checkpointed_seqs()
    assert latest == {org.id: 3, other.id: 1}


def test_genesis_links_first_entry(app, org, admin):
    first = add_entries(org, admin, 1)[0]
    assert first.prev_hash == GENESIS_HASH and first.seq == 1


def test_cli_verify_names_the_broken_entry(app, org, admin, make_org):
    entries = add_entries(org, admin, 3)
    add_entries(make_org("Organisation B"), None, 2)
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["journal", "verify", "--all"])
    assert ok.exit_code == 0, ok.output
    assert "OK, 3 entries" in ok.output
    _tamper("UPDATE journal_activite SET action = 'file.downloaded' WHERE id = :id", id=entries[1].id)
    broken = runner.invoke(args=["journal", "verify", "--organization", str(org.id)])
    assert broken.exit_code == 1
    assert f"altered at seq 2 (entry id {entries[1].id})" in broken.output
    checkpoint = runner.invoke(args=["journal", "checkpoint"])
    # Neither chain moved since `verify` anchored them: nothing to verify or sign.
    assert checkpoint.exit_code == 0 and "0 checkpoint(s) written" in checkpoint.output


def test_incremental_verification_starts_at_the_newest_checkpoint(app, org, admin):
    entries = add_entries(org, admin, 4)
    assert verify_chain(org.id).ok  # checkpoint at seq 4
    add_entries(org, admin, 3)
    result = verify_chain(org.id, since_checkpoint=True, checkpoint=False)
    assert result.ok and result.from_seq == 4 and result.entries_checked == 3
    # Altering an entry after the checkpoint is seen; one before it is left to the full pass.
    _tamper("UPDATE journal_activite SET target_label = 'x' WHERE chain_id = :c AND seq = 6", c=org.id)
    assert verify_chain(org.id, since_checkpoint=True, checkpoint=False).problem.seq == 6
    _tamper("UPDATE journal_activite SET target_label = 'y' WHERE id = :id", id=entries[1].id)
    assert verify_chain(org.id, checkpoint=False).problem.seq == 2


def test_incremental_verification_sees_the_anchor_itself_changed(app, org, admin):
    entries = add_entries(org, admin, 3)
    assert verify_chain(org.id).ok
    _tamper("DELETE FROM journal_activite WHERE id = :id", id=entries[2].id)
    result = verify_chain(org.id, since_checkpoint=True)
    assert (result.problem.kind, result.problem.seq) == ("truncated", 3)


def test_verification_streams_in_batches(app, org, admin, monkeypatch):
    from portal.audit import verification

    monkeypatch.setattr(verification, "BATCH_SIZE", 3)
    entries = add_entries(org, admin, 10)
    result = verify_chain(org.id, checkpoint=False)
    assert result.ok and result.entries_checked == 10
    _tamper("DELETE FROM journal_activite WHERE id = :id", id=entries[6].id)
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.seq, result.entries_checked) == ("deleted", 7, 6)


def test_checkpoint_refuses_to_sign_a_chain_tampered_since_the_last_checkpoint(app, org, admin):
    add_entries(org, admin, 3)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["journal", "checkpoint"])
    assert first.exit_code == 0 and "1 checkpoint(s) written" in first.output
    later = add_entries(org, admin, 3)  # seq 4 to 6
    _tamper("UPDATE journal_activite SET target_label = 'x' WHERE id = :id", id=later[1].id)

    refused = runner.invoke(args=["journal", "checkpoint"])

    assert refused.exit_code == 1, refused.output
    assert f"altered at seq 5 (entry id {later[1].id})" in refused.output
    assert checkpoints.last_checkpointed_seqs() == {org.id: 3}  # seq 6 was not signed
    # So the page's incremental badge, which starts from the newest checkpoint, still sees it.
    badge = verify_chain(org.id, since_checkpoint=True, checkpoint=False)
    assert (badge.problem.kind, badge.problem.seq) == ("altered", 5)
    entry = db.session.execute(
        sa.select(AuditEntry).where(AuditEntry.action == "journal.checkpoint_refused")
    ).scalar_one()
    assert entry.organization_id == org.id and entry.user_id is None
    assert entry.details == {"kind": "altered", "seq": 5, "entry_id": later[1].id}


def test_scheduled_checkpoint_logs_a_refusal(app, org, admin, caplog):
    from portal.audit.jobs import checkpoint_journal_chains

    entries = add_entries(org, admin, 2)
    _tamper("UPDATE journal_activite SET action = 'file.deleted' WHERE id = :id", id=entries[0].id)
    with caplog.at_level("ERROR", logger="portal.audit"):
        checkpoint_journal_chains()
    assert checkpoints.last_checkpointed_seqs() == {}
    assert any(f"chain {org.id}" in message and "seq 1" in message for message in caplog.messages)
