"""Backups through the web pages, the real scheduler, and after a killed run."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from sqlalchemy import select, update

from portal.auth.models import UserSession
from portal.backups.models import Backup, Restore
from portal.backups.repository import get_repository
from portal.database import utcnow
from portal.documents.models import File
from portal.extensions import db
from tests.backups.conftest import lose_object, packed_objects, read_contents
from tests.conftest import csrf


def test_web_backup_then_confirmed_restore(app, admin, admin_client, make_armoire, store_file, wait):
    armoire = make_armoire(admin.organization)
    file = store_file(admin, armoire, "contrat.txt", b"version sauvegardee\n")
    page = admin_client.get("/sauvegardes")
    assert page.status_code == 200 and "Lancer une sauvegarde" in page.get_data(as_text=True)
    token = csrf(admin_client, "/sauvegardes")
    response = admin_client.post("/sauvegardes", data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"].endswith("/sauvegardes")
    wait()
    backup = db.session.execute(select(Backup)).scalar_one()
    assert backup.status == "reussie"
    detail = admin_client.get(f"/sauvegardes/{backup.id}").get_data(as_text=True)
    assert armoire.name in detail and "Restaurer cette armoire" in detail
    opened = admin_client.get(f"/sauvegardes/{backup.id}/arbre?armoire_id={armoire.id}", headers={"HX-Request": "true"})
    assert "contrat.txt" in opened.get_data(as_text=True) and "Restaurer ce fichier" in opened.get_data(as_text=True)

    # The first POST is the confirmation step: it lists what changes and changes nothing.
    confirm = admin_client.post(
        f"/sauvegardes/{backup.id}/restaurer", data={"csrf_token": token, "file_id": str(file.id)}
    )
    body = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "contrat.txt" in body and "inchangé" in body
    assert db.session.execute(select(Restore)).first() is None

    # A stale proof of identity asks for the password again before anything runs.
    db.session.execute(update(UserSession).values(reauth_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    stale = admin_client.post(
        f"/sauvegardes/{backup.id}/restaurer", data={"csrf_token": token, "file_id": str(file.id), "confirmer": "1"}
    )
    assert stale.status_code == 401
    assert db.session.execute(select(Restore)).first() is None

    db.session.execute(update(UserSession).values(reauth_at=utcnow()))
    db.session.commit()
    done = admin_client.post(
        f"/sauvegardes/{backup.id}/restaurer", data={"csrf_token": token, "file_id": str(file.id), "confirmer": "1"}
    )
    assert done.status_code == 303
    wait()
    job = db.session.execute(select(Restore)).scalar_one()
    progress = admin_client.get(f"/restaurations/{job.id}", headers={"HX-Request": "true"})
    assert progress.status_code == 200 and 'id="restore-progress"' in progress.get_data(as_text=True)
    assert job.status == "reussie" and job.counts["unchanged"] == 1

    bad = admin_client.post(f"/sauvegardes/{backup.id}/restaurer", data={"csrf_token": token, "file_id": "abc"})
    assert bad.status_code == 400


def test_reader_and_contributor_are_refused(app, reader_client, contributor_client):
    for client in (reader_client, contributor_client):
        assert client.get("/sauvegardes").status_code == 403
        token = csrf(client, "/")
        assert client.post("/sauvegardes", data={"csrf_token": token}).status_code == 403


def test_backup_runs_on_the_real_scheduler(app, admin, make_armoire, store_file):
    from apscheduler.schedulers.background import BackgroundScheduler

    from portal.backups import jobs
    from portal.scheduler import run_job

    armoire = make_armoire(admin.organization)
    store_file(admin, armoire, "a.txt", b"a" * 1000)
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    try:
        # The scheduled job as the scheduler runs it: every organisation, trigger planifie.
        scheduler.add_job(run_job, "date", args=(app, jobs.scheduled_backups))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db.session.rollback()
            row = db.session.execute(select(Backup)).scalar_one_or_none()
            if row is not None and row.status != "en_cours":
                break
            time.sleep(0.1)
        assert row is not None and row.trigger == "planifie" and row.status == "reussie"
    finally:
        scheduler.shutdown(wait=True)
        app.extensions.pop("scheduler")


def test_a_killed_backup_claims_nothing_and_the_next_one_completes(app, admin, make_armoire, store_file):
    from portal.audit.context import Actor
    from portal.backups import services

    armoire = make_armoire(admin.organization)
    file = store_file(admin, armoire, "a.txt", b"contenu\n" * 100)
    # What kill -9 leaves: the row en_cours, a partial object in tmp/, no manifest.
    killed = services.start_backup(Actor(admin.organization_id, admin.id), "manuel")
    killed.created_at = utcnow() - timedelta(days=1)
    db.session.commit()
    partial = get_repository().tmp / "0123456789abcdef0123456789abcdef.part"
    partial.write_bytes(b"demi objet")
    os.utime(partial, (time.time() - 86400, time.time() - 86400))
    assert not list((get_repository().root / "manifests").rglob("*.json"))

    backup = services.backup_now(Actor(admin.organization_id, admin.id), "manuel")
    assert backup.status == "reussie"
    db.session.expire_all()
    assert db.session.get(Backup, killed.id).status == "echouee"
    assert not partial.exists()
    assert db.session.get(File, file.id).purged_at is None


def test_retention_keeps_days_weeks_months_and_prunes_only_unreferenced_objects(
    app, admin, admin_client, make_armoire, store_file
):
    from portal.audit.context import Actor
    from portal.backups import retention, services, verification
    from portal.documents.services import uploads

    armoire = make_armoire(admin.organization)
    shared = store_file(admin, armoire, "commun.txt", b"toujours la\n" * 10)
    actor = Actor(admin.organization_id, admin.id)
    token = csrf(admin_client, "/sauvegardes")
    bad = admin_client.post(
        "/sauvegardes/reglages",
        data={
            "csrf_token": token,
            "schedule": "quotidien",
            "keep_daily": "-1",
            "keep_weekly": "1",
            "keep_monthly": "0",
        },
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 422
    saved = admin_client.post(
        "/sauvegardes/reglages",
        data={"csrf_token": token, "schedule": "quotidien", "keep_daily": "2", "keep_weekly": "1", "keep_monthly": "0"},
        headers={"HX-Request": "true"},
    )
    assert saved.status_code == 200
    now = utcnow()
    ages = [timedelta(hours=2), timedelta(days=1, hours=1), timedelta(days=2, hours=1), timedelta(days=3, hours=1)]
    rows = []
    for number, age in enumerate(reversed(ages)):
        # Each backup also holds a version that only it references.
        uploads.add_version(actor, db.session.get(File, shared.id), None, iter([f"v{number}".encode()]), 2)
        db.session.commit()
        backup = services.backup_now(actor, "manuel")
        db.session.get(Backup, backup.id).created_at = now - age
        db.session.commit()
        rows.append(backup.id)
    oldest, _third, _second, newest = rows
    repo = get_repository()
    for path in repo.root.rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    oldest_body = read_contents(db.session.get(Backup, oldest).path)
    newest_body = read_contents(db.session.get(Backup, newest).path)
    only_oldest = {v["object"] for v in oldest_body["versions"]} - {v["object"] for v in newest_body["versions"]}
    assert not only_oldest  # incremental: every object of the oldest is still referenced

    from portal.backups.manifests import Manifest

    def objects_of(backup_ids):
        return set().union(*(Manifest.load(repo, db.session.get(Backup, i).path).objects() for i in backup_ids))

    # What the two oldest alone reference: their own manifest parts, no blob (incremental).
    only_pruned = objects_of(rows[:2]) - objects_of(rows[2:])
    assert only_pruned and not only_pruned & {v["object"] for v in oldest_body["versions"]}
    deleted = retention.prune(admin.organization_id, now=now)
    db.session.commit()
    # Kept: younger than a day (newest), 2 daily (newest, -1 day), 1 weekly (newest). Pruned: -2, -3 days.
    assert sorted(deleted) == sorted(rows[:2])
    removed = retention.collect_garbage()
    assert removed["objects"] == len(only_pruned)  # every blob is still used by a kept backup
    assert not any(repo.object_exists(o) for o in only_pruned)
    for backup_id in rows[2:]:
        result = verification.verify_backup(db.session.get(Backup, backup_id))
        assert result.ok, result.problems
    db.session.commit()
    # Once the last backups go, their objects go too.
    for backup_id in rows[2:]:
        db.session.get(Backup, backup_id).created_at = now - timedelta(days=400)
    db.session.execute(update(Backup).values(created_at=now - timedelta(days=400)))
    from portal.backups.models import BackupSettings

    db.session.execute(update(BackupSettings).values(keep_daily=0, keep_weekly=0, keep_monthly=0))
    db.session.commit()
    assert len(retention.prune(admin.organization_id, now=now)) == 2
    db.session.commit()
    for path in repo.root.rglob("*"):  # the pack the first collection repacked into is new
        if path.is_file():
            os.utime(path, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    stored = packed_objects()
    assert len(stored) > len({v["object"] for v in newest_body["versions"]})  # blobs and manifest parts
    assert retention.collect_garbage()["objects"] == len(stored)
    assert not list((repo.root / "packs").iterdir())


def test_starting_backups_is_rate_limited_per_organisation(app_factory, make_org, make_user, tmp_path):
    from portal.api import services as api_services
    from portal.audit.context import Actor
    from portal.backups import executor

    limited = app_factory(RATELIMIT_ENABLED=True, COFFRE_BACKUP_RATE_LIMIT="2/hour")
    with limited.app_context():
        org = make_org("Limitée")
        first, second = make_user("admin", org=org), make_user("admin", org=org)
        tokens = []
        for user in (first, second):
            _row, secret = api_services.create_token(user, Actor(org.id, user.id), name="t", days=1)
            tokens.append(secret)
        db.session.commit()
        client = limited.test_client()
        statuses = [
            client.post("/api/v1/sauvegardes", headers={"Authorization": f"Bearer {token}"}).status_code
            for token in (tokens[0], tokens[1], tokens[1])
        ]
        # Two admins of one organisation share its budget.
        assert statuses == [201, 201, 429]
        executor.drain(limited)
        db.session.remove()


def test_backup_page_reads_only_the_parts_it_shows(app, admin, admin_client, make_armoire, store_file, monkeypatch):
    """A large backup (many files parts): the page reads none, opening a folder reads only
    the parts holding its files. The other parts are deleted to prove they are not read."""
    from portal.audit.context import Actor
    from portal.backups import manifests
    from portal.backups.services import backup_now
    from portal.documents.services.folders import create_folder

    monkeypatch.setattr(manifests, "FILES_PER_PART", 2)
    actor = Actor(admin.organization_id, admin.id)
    first, second = make_armoire(admin.organization, "Achats"), make_armoire(admin.organization, "Ventes")
    folder = create_folder(actor, first, None, "Factures")
    sub = create_folder(actor, first, folder, "2026")
    db.session.commit()
    for number in range(4):
        store_file(admin, second, f"vente-{number}.txt", f"vente {number}\n".encode())
    store_file(admin, first, "facture-a.txt", b"a\n", folder=folder)
    store_file(admin, first, "facture-b.txt", b"b\n", folder=folder)
    for number in range(4):
        store_file(admin, first, f"racine-{number}.txt", f"racine {number}\n".encode())
    backup = backup_now(actor, "manuel")
    assert backup.status == "reussie"
    top = get_repository().read_manifest(backup.path)
    parts = top["parts"]["files"]
    assert len(parts) == 5
    kept = [p for p in parts if folder.id in p["folders"]]
    assert len(kept) == 1
    for part in parts:
        if part is not kept[0]:
            lose_object(part["object"])

    page = admin_client.get(f"/sauvegardes/{backup.id}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "invalide" not in body
    assert "Achats" in body and "Ventes" in body and "facture-a.txt" not in body
    hx = {"HX-Request": "true"}
    opened = admin_client.get(f"/sauvegardes/{backup.id}/arbre?folder_id={folder.id}", headers=hx)
    body = opened.get_data(as_text=True)
    assert opened.status_code == 200 and "facture-a.txt" in body and "facture-b.txt" in body and "2026" in body
    assert "<html" not in body  # a fragment
    # The sub-folder holds no file: no part lists it, none is read.
    empty = admin_client.get(f"/sauvegardes/{backup.id}/arbre?folder_id={sub.id}", headers=hx)
    assert empty.status_code == 200 and "Vide" in empty.get_data(as_text=True)
    # An armoire whose parts are gone says which part is missing (409), never a 500.
    gone = admin_client.get(f"/sauvegardes/{backup.id}/arbre?armoire_id={second.id}", headers=hx)
    assert gone.status_code == 409 and any(p["object"] in gone.get_data(as_text=True) for p in parts if p not in kept)
    assert admin_client.get(f"/sauvegardes/{backup.id}/arbre?folder_id=999999", headers=hx).status_code == 404
    assert admin_client.get(f"/sauvegardes/{backup.id}/arbre", headers=hx).status_code == 400
    # Without HTMX the same level is a page of its own.
    full = admin_client.get(f"/sauvegardes/{backup.id}/arbre?folder_id={folder.id}")
    assert full.status_code == 200 and "<html" in full.get_data(as_text=True)
