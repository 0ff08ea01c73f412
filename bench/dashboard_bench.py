"""Dashboard benchmark: 1,000,000 journal entries and 100,000 files behind the real server.

Seeds one organisation with ``portal.dashboard.seed`` (the code behind ``flask dashboard
seed``: bulk rows, a real hash chain, then one rollup rebuild), starts gunicorn on
127.0.0.1, signs in as the admin and measures p50/p95 of both dashboards (page, HTMX
period switch, JSON) for 30 days and 12 months. Then it uploads one file through the
API and checks that the next JSON answer counts it. /healthz is the floor.

    .venv/bin/python bench/dashboard_bench.py --backend sqlite
    .venv/bin/python bench/dashboard_bench.py --backend both --entries 1000000 --files 100000

PostgreSQL uses a throwaway database ``coffre_bench_<pid>`` (created, then dropped).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.journal_bench import POSTGRES_ADMIN_URL, build_app, measure, session_cookie  # noqa: E402
from bench.server import portal_env, start_gunicorn  # noqa: E402

TARGET_MS = 150.0


def seed(app, entries: int, files: int) -> dict[str, object]:
    from portal.api import services as api_services
    from portal.audit.context import Actor
    from portal.auth.models import User
    from portal.dashboard.seed import seed as seed_data
    from portal.extensions import db

    with app.app_context():
        db.create_all()
        started = time.perf_counter()
        seeded = seed_data(entries=entries, files=files)
        seconds = time.perf_counter() - started
        admin = db.session.get(User, seeded.user_ids[0])
        _token, secret = api_services.create_token(admin, Actor(admin.organization_id, admin.id), name="bench", days=1)
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
        info = {"seeded": seeded, "seconds": seconds, "token": secret}
        db.engine.dispose()
        return info


def run(backend: str, entries: int, files: int, requests: int, workers: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="coffre-dashboard-bench-"))
    instance = tmp / "instance"
    instance.mkdir(mode=0o700)
    secret, pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    admin_engine = None
    name = f"coffre_bench_{os.getpid()}"
    if backend == "postgresql":
        admin_engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = re.sub(r"/[^/]*$", f"/{name}", POSTGRES_ADMIN_URL)
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    server = None
    try:
        app = build_app(url, instance, secret, pepper)
        print(f"[{backend}] seeding {entries:,} entries and {files:,} files…", flush=True)
        info = seed(app, entries, files)
        seeded = info["seeded"]
        print(f"[{backend}] seeded in {info['seconds']:.1f} s (rollups rebuilt included)", flush=True)
        # No storage quota: the 100,000 seeded files exceed the trial's 1 GiB, and the bench's
        # last step uploads one more file to check it is counted at once.
        env = portal_env(url, instance, secret, pepper, COFFRE_TRIAL_STORAGE_MB="0")
        server, base = start_gunicorn(env, workers)
        cookie = session_cookie(app, seeded.user_ids[0])
        client = httpx.Client(base_url=base, cookies={"coffre_session": cookie}, timeout=60)
        api = {"Authorization": f"Bearer {info['token']}"}
        member = seeded.user_ids[5]
        htmx = {"HX-Request": "true"}
        results = {
            "healthz (floor)": measure(client, "/healthz", requests),
            "/dashboard/global 30 d": measure(client, "/dashboard/global?periode=30", requests, expect="data-chart"),
            "/dashboard/global 12 mo": measure(client, "/dashboard/global?periode=365", requests, expect="data-chart"),
            "global HTMX switch 90 d": measure(client, "/dashboard/global?periode=90", requests, headers=htmx),
            "API global 30 d": measure(client, "/api/v1/dashboard/global?periode=30", requests, headers=api),
            "/dashboard/utilisateur 30 d": measure(
                client, f"/dashboard/utilisateur/{member}?periode=30", requests, expect="data-chart"
            ),
            "/dashboard/utilisateur 12 mo": measure(
                client, f"/dashboard/utilisateur/{member}?periode=365", requests, expect="data-chart"
            ),
            "API utilisateur 30 d": measure(
                client, f"/api/v1/dashboard/utilisateur/{member}?periode=30", requests, headers=api
            ),
        }
        print(f"\n[{backend}] {entries:,} entries, {files:,} files, gunicorn -w {workers}, {requests} requests each")
        print(f"{'page':<32}{'p50 ms':>9}{'p95 ms':>9}{'p95/target':>12}")
        for label, figures in results.items():
            print(f"{label:<32}{figures['p50']:>9.1f}{figures['p95']:>9.1f}{figures['p95'] / TARGET_MS:>12.2f}")

        before = client.get("/api/v1/dashboard/global?periode=7", headers=api).json()
        upload = client.post(
            "/api/v1/fichiers",
            headers=api,
            data={"armoire_id": str(seeded.armoire_ids[0])},
            files={"file": ("nouveau.txt", b"un nouveau fichier\n", "text/plain")},
        )
        after = client.get("/api/v1/dashboard/global?periode=7", headers=api).json()
        shown = (
            upload.status_code == 201
            and after["documents"] == before["documents"] + 1
            and after["activity"][-1]["uploads"] == before["activity"][-1]["uploads"] + 1
        )
        print(f"new upload (HTTP {upload.status_code}) counted by the next answer: {'yes' if shown else 'NO'}")
        client.close()
        if not shown:
            raise SystemExit("the upload did not show in the figures")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if admin_engine is not None:
            with admin_engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin_engine.dispose()
        for path in sorted(tmp.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        tmp.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100, help="requests per measured page")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        run(backend, args.entries, args.files, args.requests, args.workers)


if __name__ == "__main__":
    main()
