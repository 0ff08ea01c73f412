"""A backup process killed with SIGKILL half-way through: nothing claims success, the next
backup completes, and the portal keeps serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from portal.audit.context import Actor
from portal.backups import services, verification
from portal.backups.models import Backup
from portal.backups.repository import get_repository
from portal.database import utcnow
from portal.extensions import db

ROOT = Path(__file__).resolve().parents[2]

# The real run_backup in its own process; after its third new object it says so and waits,
# so the parent's SIGKILL lands mid-copy (before the parts and the manifest) every time.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.conftest import make_test_app
    from portal.backups import packs, services

    database_url, instance, backup_id, marker = sys.argv[1:5]
    app = make_test_app(database_url, Path(instance))
    original = packs.PackWriter.append_file
    written = []

    def append_file(self, *args, **kwargs):
        original(self, *args, **kwargs)
        written.append(args)
        if len(written) == 3:
            Path(marker).write_text("3 objects")
            time.sleep(600)

    packs.PackWriter.append_file = append_file
    with app.app_context():
        services.run_backup(int(backup_id))
    """
)


def test_sigkill_mid_backup_leaves_no_manifest_and_the_next_backup_completes(
    app, admin, admin_client, make_armoire, store_file, database_url, tmp_path
):
    armoire = make_armoire(admin.organization)
    files = [store_file(admin, armoire, f"f{n}.bin", os.urandom(64 * 1024)) for n in range(8)]
    actor = Actor(admin.organization_id, admin.id)
    backup = services.start_backup(actor, "manuel")
    db.session.commit()
    backup_id = backup.id
    instance = Path(app.config["COFFRE_STORAGE_DIR"]).parent
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_url, str(instance), str(backup_id), str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the backup process ended before it was killed"
            assert time.monotonic() < deadline, "the backup process never reached its third object"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    repository = get_repository()
    db.session.rollback()
    killed = db.session.get(Backup, backup_id)
    assert killed.status == "en_cours" and killed.path is None
    assert not list((repository.root / "manifests").rglob("*.json"))  # nothing claims success
    # Some blobs were copied into packs still being written (tmp/), none sealed: the process
    # died before the parts, the packs' indexes and the top manifest.
    partial = list(repository.tmp.glob("*.pack.part"))
    assert partial and sum(p.stat().st_size for p in partial) >= 3 * 64 * 1024
    assert not list((repository.root / "packs").iterdir())

    # The portal keeps serving while a row is left en_cours.
    assert admin_client.get("/sauvegardes").status_code == 200
    assert admin_client.get(f"/fichiers/{files[0].id}/telecharger").status_code == 200

    killed.created_at = utcnow() - timedelta(hours=7)  # past the 6 hours a run may take
    db.session.commit()
    after = services.backup_now(actor, "manuel")
    assert after.status == "reussie", after.error
    assert after.summary["files"] == len(files)
    db.session.expire_all()
    assert db.session.get(Backup, backup_id).status == "echouee"
    result = verification.verify_backup(db.session.get(Backup, after.id))
    db.session.commit()
    assert result.ok, result.problems
