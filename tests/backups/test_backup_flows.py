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
    assert "contrat.txt" in detail and "Restaurer ce fichier" in detail

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
