"""Backups: first backup vs tar of the same blobs, an incremental backup after changing 1%,
and restoring one file from a backup whose manifest names 100,000 objects.

Run: .venv/bin/python bench/backups_bench.py [--files 1000] [--mib 1] [--objects 100000]
Everything lives in a fresh temporary instance on the same disk (SQLite); tar writes its
archive to that disk too and is fsynced, as every backup object is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=1)
    parser.add_argument("--objects", type=int, default=100_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="coffre-bench-backups-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    os.environ["COFFRE_INSTANCE_DIR"] = str(base / "instance")
    from portal import create_app

    app = create_app({"TESTING": True, "SCHEDULER_ENABLED": False, "RATELIMIT_ENABLED": False})
    from portal.audit.context import Actor
    from portal.backups import services
    from portal.backups.models import Backup
    from portal.backups.repository import get_repository
    from portal.documents.models import Armoire, File
    from portal.documents.services import uploads
    from portal.extensions import db
    from portal.organizations.models import Organization

    with app.app_context():
        db.create_all()
        org = Organization(name="Bench", require_2fa=False)
        db.session.add(org)
        db.session.commit()
        actor = Actor.system(org.id)
        armoire = Armoire(organization_id=org.id, name="Bench")
        db.session.add(armoire)
        db.session.commit()
        block = os.urandom(args.mib * 1024 * 1024)
        started = time.perf_counter()
        ids = []
        for number in range(args.files):
            content = number.to_bytes(8, "big") + block[8:]
            version = uploads.store_upload(actor, armoire, None, f"f{number:05d}.bin", iter([content]), len(content))
            db.session.commit()
            ids.append(version.file_id)
        print(f"setup: {args.files} files of {args.mib} MiB stored in {time.perf_counter() - started:.1f} s")
        storage = Path(app.config["COFFRE_STORAGE_DIR"])

        subprocess.run(["sync"], check=True)
        started = time.perf_counter()
        archive = base / "blobs.tar"
        subprocess.run(["tar", "cf", str(archive), "--exclude=tmp", "-C", str(storage), "."], check=True)
        with archive.open("rb") as handle:
            os.fsync(handle.fileno())
        tar_seconds = time.perf_counter() - started
        archive.unlink()

        subprocess.run(["sync"], check=True)
        started = time.perf_counter()
        first = services.backup_now(actor, "manuel")
        first_seconds = time.perf_counter() - started
        assert first.status == "reussie", first.error

        for file_id in ids[: max(1, args.files // 100)]:
            content = os.urandom(args.mib * 1024 * 1024)
            uploads.add_version(actor, db.session.get(File, file_id), None, iter([content]), len(content))
            db.session.commit()
        subprocess.run(["sync"], check=True)
        started = time.perf_counter()
        second = services.backup_now(actor, "manuel")
        second_seconds = time.perf_counter() - started

        total = first.summary["bytes"]
        print(f"tar of the blobs:   {tar_seconds:.2f} s ({total / tar_seconds / 2**20:.0f} MiB/s)")
        print(
            f"first backup:       {first_seconds:.2f} s ({total / first_seconds / 2**20:.0f} MiB/s), "
            f"speed vs tar {tar_seconds / first_seconds:.2f}x"
        )
        print(
            f"second backup (1%): {second_seconds:.2f} s = {second_seconds / first_seconds:.1%} of the first; "
            f"new bytes {second.summary['new_bytes']} = {second.summary['new_bytes'] / second.summary['bytes']:.2%} "
            f"of {second.summary['bytes']}"
        )

        # A manifest naming args.objects objects: the real ones plus synthetic entries.
        repository = get_repository()
        body = repository.read_manifest(second.path)
        extra_files, extra_versions = [], []
        next_id = 10_000_000
        for index in range(args.objects - len(body["versions"])):
            digest = f"{index:064x}"
            extra_files.append({**body["files"][0], "id": next_id + index, "current_version_id": next_id + index})
            extra_versions.append({**body["versions"][0], "id": next_id + index, "object": digest})
        body["files"] += extra_files
        body["versions"] += extra_versions
        big = Backup(organization_id=org.id, trigger="manuel", status="reussie", summary={})
        db.session.add(big)
        db.session.commit()
        path, size = repository.write_manifest(org.id, big.id, {**body, "backup_id": big.id})
        big.path = path
        db.session.commit()
        target = ids[-1]
        uploads.add_version(actor, db.session.get(File, target), None, iter([b"changed"]), 7)
        db.session.commit()
        started = time.perf_counter()
        job = services.start_restore(actor, big, {"file_id": target})
        db.session.commit()
        services.run_restore(job.id)
        restore_seconds = time.perf_counter() - started
        db.session.expire_all()
        print(
            f"restore one file from a {len(body['versions'])}-object backup ({size / 2**20:.0f} MiB manifest): "
            f"{restore_seconds:.2f} s, counts {db.session.get(type(job), job.id).counts}"
        )
    subprocess.run(["rm", "-rf", str(base)], check=True)


if __name__ == "__main__":
    main()
