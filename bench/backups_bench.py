"""Backups: first backup vs tar of the same blobs, an incremental backup after changing 1%,
and restoring one file from a backup whose manifest names 100,000 objects.

Run: .venv/bin/python bench/backups_bench.py [--files 1000] [--mib 1] [--objects 100000] [--rounds 3]
Everything lives in a fresh temporary instance on the same disk (SQLite); tar writes its
archive to that disk too and is fsynced, as every backup object is.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="coffre-bench-backups-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    os.environ["COFFRE_INSTANCE_DIR"] = str(base / "instance")
    from portal import create_app

    app = create_app({"TESTING": True, "SCHEDULER_ENABLED": False, "RATELIMIT_ENABLED": False})
    from portal.audit.context import Actor
    from portal.backups import manifests, restores, services
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

        # tar and the first backup alternate, --rounds times, each first backup into a fresh
        # repository: on this shared machine one pair of runs moves by 2-3x between runs.
        tar_runs, first_runs = [], []
        for round_number in range(args.rounds):
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            archive = base / "blobs.tar"
            subprocess.run(["tar", "cf", str(archive), "--exclude=tmp", "-C", str(storage), "."], check=True)
            with archive.open("rb") as handle:
                os.fsync(handle.fileno())
            tar_runs.append(time.perf_counter() - started)
            archive.unlink()

            app.config["COFFRE_BACKUP_DIR"] = str(base / f"backups-{round_number}")
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            if os.environ.get("BENCH_PROFILE") == "backup":
                import cProfile
                import pstats

                profile = cProfile.Profile()
                first = profile.runcall(services.backup_now, actor, "manuel")
                first_runs.append(time.perf_counter() - started)
                pstats.Stats(profile).sort_stats("tottime").print_stats(15)
            else:
                first = services.backup_now(actor, "manuel")
                first_runs.append(time.perf_counter() - started)
            assert first.status == "reussie", first.error
            if round_number < args.rounds - 1:
                subprocess.run(["rm", "-rf", app.config["COFFRE_BACKUP_DIR"]], check=True)
        tar_seconds, first_seconds = statistics.median(tar_runs), statistics.median(first_runs)
        print(
            "tar runs:",
            " ".join(f"{t:.2f}" for t in tar_runs),
            "| first backup runs:",
            " ".join(f"{t:.2f}" for t in first_runs),
        )
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
        print(f"tar of the blobs (median):   {tar_seconds:.2f} s ({total / tar_seconds / 2**20:.0f} MiB/s)")
        print(
            f"first backup (median):       {first_seconds:.2f} s ({total / first_seconds / 2**20:.0f} MiB/s), "
            f"speed vs tar {tar_seconds / first_seconds:.2f}x"
        )
        print(
            f"second backup (1%): {second_seconds:.2f} s = {second_seconds / first_seconds:.1%} of the first; "
            f"new bytes {second.summary['new_bytes']} = {second.summary['new_bytes'] / second.summary['bytes']:.2%} "
            f"of {second.summary['bytes']}"
        )

        # A backup naming args.objects objects: the real entries plus synthetic ones, written
        # in the current manifest format (parts and a signed top) through manifests.write.
        repository = get_repository()
        from portal.backups.manifests import Manifest

        real = Manifest.load(repository, second.path)
        files, versions = real.files(), real.versions()
        snapshot = {
            "armoires": real.armoires,
            "folders": real.folders,
            "files": files,
            "versions": versions,
            "members": real.members(),
            "journal": real.journal(),
            "checkpoints": real.body["checkpoints"],
        }
        next_id = 10_000_000
        for index in range(args.objects - len(versions)):
            snapshot["files"].append({**files[0], "id": next_id + index, "current_version_id": next_id + index})
            snapshot["versions"].append(
                {**versions[0], "id": next_id + index, "file_id": next_id + index, "object": f"{index:064x}"}
            )
        big = Backup(organization_id=org.id, trigger="manuel", status="reussie", summary={})
        db.session.add(big)
        db.session.commit()
        path, size = manifests.write(repository, org.id, big.id, {"created_at": "", "trigger": "manuel"}, snapshot)
        big.path = path
        db.session.commit()
        body = {"versions": snapshot["versions"]}
        target = ids[-1]
        uploads.add_version(actor, db.session.get(File, target), None, iter([b"changed"]), 7)
        db.session.commit()

        def restore_one():
            job = restores.start_restore(actor, big, {"file_id": target})
            db.session.commit()
            restores.run_restore(job.id)
            return job

        started = time.perf_counter()
        if os.environ.get("BENCH_PROFILE") == "restore":
            import cProfile
            import pstats

            profile = cProfile.Profile()
            job = profile.runcall(restore_one)
            restore_seconds = time.perf_counter() - started
            pstats.Stats(profile).sort_stats("cumtime").print_stats(30)
        else:
            job = restore_one()
            restore_seconds = time.perf_counter() - started
        db.session.expire_all()
        print(
            f"restore one file from a {len(body['versions'])}-object backup ({size / 2**20:.0f} MiB written): "
            f"{restore_seconds:.2f} s, counts {db.session.get(type(job), job.id).counts}"
        )
    subprocess.run(["rm", "-rf", str(base)], check=True)


if __name__ == "__main__":
    main()
