"""Dashboard benchmark: 1,000,000 journal entries and 100,000 files behind the real server.

Seeds one organisation with ``portal.dashboard.seed`` (the code behind ``flask dashboard
seed``: bulk rows, a real hash chain, then one rollup rebuild), starts gunicorn on
127.0.0.1, signs in as the admin and measures p50/p95 of both dashboards (page, HTMX
period switch, JSON) for every period (7, 30, 90 days, 12 months), after timing the
services behind them in process. Then it uploads one file through the API and checks that
the next JSON answer counts it. /healthz is the floor.

    .venv/bin/python bench/dashboard_bench.py --backend sqlite
    .venv/bin/python bench/dashboard_bench.py --backend both --entries 1000000 --files 100000

The database is a throwaway one from ``bench.server.running_database``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.journal_bench import build_app, measure, session_cookie  # noqa: E402
from bench.server import portal_env, running_database, start_gunicorn  # noqa: E402

TARGET_MS = 150.0


def seed(app, entries: int, files: int) -> dict[str, object]:
    from portal.api import services as api_services
    from portal.audit.context import Actor
    from portal.audit.verification import verify_chain
    from portal.auth.models import User
    from portal.dashboard import rollups
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
        started = time.perf_counter()
        chain = verify_chain(seeded.organization_id)
        verify_seconds = time.perf_counter() - started
        db.session.rollback()
        consistent = rollups.stored(seeded.organization_id) == rollups.recount(seeded.organization_id)
        db.session.rollback()
        if not (chain.ok and consistent):
            raise SystemExit(f"seeded data inconsistent: chain {chain.problem}, rollups = recount: {consistent}")
        print(f"chain verified ({chain.entries_checked:,} entries, {verify_seconds:.1f} s), rollups = recount")
        info = {"seeded": seeded, "seconds": seconds, "token": secret}
        db.engine.dispose()
        return info


def in_process(app, seeded, member: int, repeat: int) -> dict[str, dict[str, float]]:
    """The services behind the pages, called directly (no HTTP, no rendering): what the
    database and the rollup queries cost, apart from the server and the machine's other jobs."""
    from portal.dashboard import services
    from portal.extensions import db

    organization_id = seeded.organization_id
    calls = {}
    for period in services.PERIODS:
        calls[f"global_figures {period} d"] = lambda period=period: services.global_figures(organization_id, period)
        calls[f"member_figures {period} d"] = lambda period=period: services.member_figures(
            organization_id, member, period
        )
    results = {}
    with app.app_context():
        for label, call in calls.items():
            timings = []
            for number in range(repeat + 2):
                started = time.perf_counter()
                call()
                elapsed = (time.perf_counter() - started) * 1000
                db.session.rollback()
                if number >= 2:  # two warm-ups: the first call of each query also plans it
                    timings.append(elapsed)
            results[label] = {"p50": statistics.median(timings), "p95": statistics.quantiles(timings, n=100)[94]}
        db.engine.dispose()
    return results


def over_http(client: httpx.Client, token: str, member: int, requests: int) -> dict[str, dict[str, float]]:
    from portal.dashboard.services import PERIODS

    api = {"Authorization": f"Bearer {token}"}
    results = {"healthz (floor)": measure(client, "/healthz", requests)}
    for period in PERIODS:
        for name, path in (("global", "global"), ("utilisateur", f"utilisateur/{member}")):
            results[f"/dashboard/{name} {period} d"] = measure(
                client, f"/dashboard/{path}?periode={period}", requests, expect="data-chart"
            )
            results[f"  HTMX {name} {period} d"] = measure(
                client, f"/dashboard/{path}?periode={period}", requests, headers={"HX-Request": "true"}
            )
            results[f"  API {name} {period} d"] = measure(
                client, f"/api/v1/dashboard/{path}?periode={period}", requests, headers=api
            )
    return results


def upload_counted_at_once(client: httpx.Client, token: str, armoire_id: int) -> bool:
    api = {"Authorization": f"Bearer {token}"}
    before = client.get("/api/v1/dashboard/global?periode=7", headers=api).json()
    upload = client.post(
        "/api/v1/fichiers",
        headers=api,
        data={"armoire_id": str(armoire_id)},
        files={"file": ("nouveau.txt", b"un nouveau fichier\n", "text/plain")},
    )
    after = client.get("/api/v1/dashboard/global?periode=7", headers=api).json()
    shown = (
        upload.status_code == 201
        and after["documents"] == before["documents"] + 1
        and after["activity"][-1]["uploads"] == before["activity"][-1]["uploads"] + 1
    )
    print(f"new upload (HTTP {upload.status_code}) counted by the next answer: {'yes' if shown else 'NO'}")
    return shown


def run(backend: str, entries: int, files: int, requests: int, workers: int) -> None:
    with running_database(backend) as (url, instance, secret, pepper):
        app = build_app(url, instance, secret, pepper)
        print(f"[{backend}] seeding {entries:,} entries and {files:,} files…", flush=True)
        info = seed(app, entries, files)
        seeded = info["seeded"]
        print(f"[{backend}] seeded in {info['seconds']:.1f} s (rollups rebuilt included)", flush=True)
        member = seeded.user_ids[5]
        services = in_process(app, seeded, member, max(20, requests // 2))
        print(f"\n[{backend}] services in process, {max(20, requests // 2)} calls each")
        print(f"{'call':<32}{'p50 ms':>9}{'p95 ms':>9}")
        for label, figures in services.items():
            print(f"{label:<32}{figures['p50']:>9.1f}{figures['p95']:>9.1f}")
        # No storage quota: the 100,000 seeded files exceed the trial's 1 GiB, and the bench's
        # last step uploads one more file to check it is counted at once.
        env = portal_env(url, instance, secret, pepper, COFFRE_TRIAL_STORAGE_MB="0")
        server, base = start_gunicorn(env, workers)
        try:
            cookie = session_cookie(app, seeded.user_ids[0])
            client = httpx.Client(base_url=base, cookies={"coffre_session": cookie}, timeout=60)
            load = os.getloadavg()[0]
            results = over_http(client, info["token"], member, requests)
            load = max(load, os.getloadavg()[0])
            print(
                f"\n[{backend}] {entries:,} entries, {files:,} files, gunicorn -w {workers}, "
                f"{requests} requests each, load average {load:.1f} (1 min, highest of start/end)"
            )
            floor = results["healthz (floor)"]
            print(f"{'page':<34}{'p50 ms':>9}{'p95 ms':>9}{'p95/target':>12}{'p50/floor':>11}{'p95/floor':>11}")
            for label, figures in results.items():
                print(
                    f"{label:<34}{figures['p50']:>9.1f}{figures['p95']:>9.1f}{figures['p95'] / TARGET_MS:>12.2f}"
                    f"{figures['p50'] / floor['p50']:>11.1f}{figures['p95'] / floor['p95']:>11.1f}"
                )
            shown = upload_counted_at_once(client, info["token"], seeded.armoire_ids[0])
            client.close()
            if not shown:
                raise SystemExit("the upload did not show in the figures")
        finally:
            server.terminate()
            server.wait(timeout=30)


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
