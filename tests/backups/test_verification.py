"""The nightly sampled verification (on the real scheduler) and format 1 backups still served."""

from __future__ import annotations

import time

from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.backups import restores, services, verification
from portal.backups.manifests import Manifest
from portal.backups.models import Backup, Restore
from portal.backups.repository import get_repository
from portal.database import utcnow
from portal.documents.models import File
from portal.documents.services import uploads
from portal.extensions import db
from tests.api.conftest import bearer
from tests.backups.conftest import damage_object, flip_byte, lose_object, read_contents

SLICES = 2


def _blob_objects(backup: Backup) -> set[str]:
    manifest = Manifest.load(get_repository(), backup.path)
    return {row[1] for row in manifest.index() if row[1]}


def _backup_with_both_slices(admin, armoire, store_file, night: int) -> tuple[Backup, set[str], set[str]]:
    """A backup holding blob objects inside and outside tonight's slice (files are added
    until both exist: which slice a ciphertext falls in is up to its random key)."""
    for number in range(64):
        store_file(admin, armoire, f"piece-{number}.txt", f"piece {number}\n".encode() * 20)
        if number < 3:
            continue
        backup = services.backup_now(Actor(admin.organization_id, admin.id), "manuel")
        objects = _blob_objects(backup)
        tonight = {o for o in objects if verification.in_slice(o, night, SLICES)}
        if tonight and objects - tonight:
            return backup, tonight, objects - tonight
        # The nightly job verifies every backup; only the one returned may be there.
        db.session.delete(backup)
        db.session.commit()
    raise AssertionError("64 random objects all fell in one slice")


def _wait_verified(backup_id: int, after) -> Backup:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        db.session.rollback()
        row = db.session.get(Backup, backup_id)
        if row.verified_at is not None and row.verified_at >= after:
            return row
        time.sleep(0.1)
    raise AssertionError("the scheduled verification did not run")


def test_nightly_verification_samples_objects_on_the_real_scheduler(app, admin, make_armoire, store_file):
    from apscheduler.schedulers.background import BackgroundScheduler

    from portal.backups import jobs
    from portal.scheduler import run_job

    app.config["COFFRE_BACKUP_VERIFY_SLICES"] = SLICES
    night = utcnow().toordinal()
    backup, tonight, later = _backup_with_both_slices(admin, make_armoire(admin.organization), store_file, night)
    parts = {ref["object"] for ref in Manifest.load(get_repository(), backup.path).part_refs()}
    backup_id = backup.id
    started = utcnow()
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    try:
        scheduler.add_job(run_job, "date", args=(app, jobs.verify_sample))
        row = _wait_verified(backup_id, started)
    finally:
        scheduler.shutdown(wait=True)
    assert row.status == "verifiee" and row.verification_ok is True
    entry = db.session.execute(
        select(AuditEntry).where(AuditEntry.action == "backup.verified", AuditEntry.target_id == backup_id)
    ).scalar_one()
    # Every object looked up, tonight's slice (and the small parts) re-read and hashed.
    assert entry.details["sampled"] is True and entry.details["ok"] is True
    assert entry.details["objects"] == len(tonight) + len(later) + len(parts)
    assert entry.details["read"] == len(tonight) + len(parts)

    # An object outside tonight's slice is corrupted: tonight passes, the next night names it.
    victim = sorted(later)[0]
    damage_object(victim, flip_byte(40))
    (result,) = verification.verify_nightly(night)
    db.session.commit()
    assert result.ok
    (result,) = verification.verify_nightly(night + 1)
    db.session.commit()
    assert not result.ok and victim in result.problems[0]
    db.session.expire_all()
    row = db.session.get(Backup, backup_id)
    assert row.status == "echouee" and row.verification_ok is False and victim in row.verification_detail
    with app.test_request_context():
        try:
            restores.start_restore(Actor(admin.organization_id, admin.id), row, {"all": True})
        except services.BackupError as error:
            assert error.status == 409
        else:
            raise AssertionError("a restore from a backup that failed its verification was accepted")

    # A missing object is caught on any night: every object is looked up every night.
    other = services.backup_now(Actor(admin.organization_id, admin.id), "manuel")
    gone = sorted(_blob_objects(other) - {victim})[0]
    lose_object(gone)
    results = verification.verify_nightly(night)
    db.session.commit()
    assert [r.backup_id for r in results] == [other.id]  # the failed one is not re-verified nightly
    assert not results[0].ok and gone in results[0].problems[0]


def test_a_format_1_backup_stays_verifiable_and_restorable(
    app, client, admin, make_token, make_armoire, store_file, wait
):
    """The single signed document the first backups wrote: verify, browse, restore, collect."""
    from portal.backups import retention

    armoire = make_armoire(admin.organization)
    file = store_file(admin, armoire, "ancien.txt", b"contenu d'origine\n" * 30)
    current = services.backup_now(Actor(admin.organization_id, admin.id), "manuel")
    contents = read_contents(current.path)
    manifest = Manifest.load(get_repository(), current.path)
    old = Backup(organization_id=admin.organization_id, trigger="manuel", status="reussie", summary={})
    db.session.add(old)
    db.session.commit()
    body = {
        "format": 1,
        "backup_id": old.id,
        "organization_id": admin.organization_id,
        "created_at": old.created_at.isoformat(),
        "trigger": "manuel",
        "armoires": manifest.armoires,
        "folders": manifest.folders,
        "files": contents["files"],
        "versions": contents["versions"],
        "members": contents["members"],
        "journal": contents["journal"],
        "checkpoints": manifest.body["checkpoints"],
    }
    old.path, _size = get_repository().write_manifest(admin.organization_id, old.id, body)
    db.session.commit()
    # The format-2 backup goes: only the format-1 manifest still references the blob.
    get_repository().delete_manifest(current.path)
    db.session.delete(db.session.get(Backup, current.id))
    db.session.commit()
    assert retention.collect_garbage()["objects"] == 0  # everything is younger than a day anyway

    result = app.test_cli_runner().invoke(args=["backups", "verify", str(old.id)])
    assert result.exit_code == 0 and "1 objects verified" in result.output, result.output

    uploads.add_version(Actor(admin.organization_id, admin.id), file, None, iter([b"ecrase\n"]), 7)
    db.session.commit()
    token = make_token(admin)
    response = client.post(f"/api/v1/sauvegardes/{old.id}/restaurer", json={"file_id": file.id}, headers=bearer(token))
    assert response.status_code == 202, response.get_data(as_text=True)
    wait()
    job = db.session.get(Restore, response.get_json()["id"])
    assert job.status == "reussie" and job.counts["restored"] == 1, job.error
    restored = db.session.get(File, file.id)
    assert restored.current_version.number == 3 and restored.current_version.restored_from_version == 1
