"""A backup that fills its disk for real (a 1 MiB tmpfs as the repository): the row ends
``echouee`` saying so, no partial object stays, the portal keeps serving, and once the disk
has room the next backup succeeds."""

from __future__ import annotations

import os
import subprocess

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.backups import verification
from portal.backups.models import Backup
from portal.backups.repository import get_repository
from portal.extensions import db
from tests.api.conftest import bearer


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "backup-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is refused in this sandbox: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_backup_disk_fails_the_backup_cleanly_and_the_next_one_succeeds(
    app, client, admin, admin_client, make_token, make_armoire, store_file, small_disk
):
    app.config["COFFRE_BACKUP_DIR"] = str(small_disk / "sauvegardes")
    armoire = make_armoire(admin.organization)
    files = [store_file(admin, armoire, f"scan-{n}.pdf", os.urandom(300 * 1024)) for n in range(6)]
    token = make_token(admin)

    full = client.post("/api/v1/sauvegardes?attendre=1", headers=bearer(token))
    assert full.status_code == 507, full.get_data(as_text=True)
    assert "plein" in full.get_json()["detail"]
    db.session.expire_all()
    failed = db.session.execute(select(Backup)).scalar_one()
    assert failed.status == "echouee" and failed.path is None
    assert failed.error.startswith("disk full")
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "backup.failed")).scalar_one()
    assert entry.target_id == failed.id and "disk full" in entry.details["error"]
    repository = get_repository()
    assert not list((repository.root / "manifests").rglob("*.json"))  # nothing claims success
    assert not list(repository.tmp.iterdir())  # the partial pack was removed
    assert not list((repository.root / "packs").iterdir())

    # The portal keeps serving: its own storage is another disk.
    assert admin_client.get("/sauvegardes").status_code == 200
    page = admin_client.get(f"/sauvegardes/{failed.id}").get_data(as_text=True)
    assert "le disque des sauvegardes était plein" in page
    assert admin_client.get(f"/fichiers/{files[0].id}/telecharger").status_code == 200
    assert client.get(f"/api/v1/sauvegardes/{failed.id}", headers=bearer(token)).get_json()["status"] == "echouee"

    # Room again: the next backup completes and verifies.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    done = client.post("/api/v1/sauvegardes?attendre=1", headers=bearer(token))
    assert done.status_code == 201, done.get_data(as_text=True)
    row = done.get_json()
    assert row["status"] == "reussie" and row["summary"]["files"] == len(files)
    result = verification.verify_backup(db.session.get(Backup, row["id"]))
    db.session.commit()
    assert result.ok, result.problems
