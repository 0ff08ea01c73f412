"""Global search benchmark: 100,000 files behind the real server (gunicorn), SQLite and PostgreSQL.

Seeds one organisation with 5 armoires, 492 folders (up to three levels) and ``--files`` files with
French, accented names (bulk Core inserts: the ``name_key`` default derives each sort key from
the name, as the ORM does on every write), then measures p50/p95 of ``GET /api/v1/recherche``
and of the ``/recherche`` page (HTMX fragment) for several searches, each against ``/healthz``
measured in the same run as the floor. The issue's target is p95 < 100 ms.

    .venv/bin/python bench/search_bench.py --backend sqlite
    .venv/bin/python bench/search_bench.py --backend both --files 100000
    .venv/bin/python bench/search_bench.py --backend both --keep /tmp/coffre-search-bench --in-process

PostgreSQL uses a throwaway database ``coffre_bench_<pid>`` (created, then dropped). With
``--keep DIR`` the seeded databases are kept instead (SQLite in DIR, PostgreSQL as
``coffre_bench_search_kept``) and reused by the next run with the same ``--files``: seeding
100,000 files takes minutes on a loaded machine. A reused database gets the models' current
indexes (and the search's trigram index) before the run. ``--in-process`` also times the
search service alone (no HTTP, no gunicorn scheduling) and ``--explain`` prints each search's
query plans.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.journal_bench import build_app, measure, session_cookie  # noqa: E402
from bench.server import POSTGRES_ADMIN_URL, portal_env, running_database, start_gunicorn  # noqa: E402

TARGET_MS = 100.0
WORDS = [
    "facture",
    "relevé",
    "contrat",
    "procès-verbal",
    "bulletin",
    "déclaration",
    "reçu",
    "attestation",
    "budget",
    "électricité",
    "téléphone",
    "loyer",
    "salaire",
    "impôts",
    "assurance",
    "réunion",
    "fournisseur",
    "clôture",
    "trésorerie",
    "écriture",
    "bilan",
    "compte-rendu",
    "commande",
    "livraison",
]
EXTENSIONS = [
    ("pdf", "application/pdf"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("png", "image/png"),
    ("txt", "text/plain"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
]
MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]


def seed(app, files: int) -> dict[str, object]:
    from portal.api import services as api_services
    from portal.audit.context import Actor
    from portal.auth.models import User
    from portal.documents.models import Armoire, File, Folder
    from portal.extensions import db
    from portal.organizations.models import Organization

    with app.app_context():
        db.create_all()
        started = time.perf_counter()
        org = Organization(name="Bench recherche", require_2fa=False)
        db.session.add(org)
        db.session.flush()
        users = [
            User(
                organization_id=org.id,
                email=f"u{i}@bench.test",
                name=f"Aminata Diallo {i}",
                role="admin",
                password_hash="x",
            )
            for i in range(10)
        ]
        db.session.add_all(users)
        armoires = [
            Armoire(organization_id=org.id, name=name)
            for name in ("Comptabilité", "Ressources humaines", "Juridique", "Commercial", "Archives")
        ]
        db.session.add_all(armoires)
        db.session.flush()
        folder_ids = []
        for a_index, armoire in enumerate(armoires):
            for year in range(2020, 2028):
                top = Folder(organization_id=org.id, armoire_id=armoire.id, name=f"Année {year}")
                db.session.add(top)
                db.session.flush()
                for month in MONTHS:
                    sub = Folder(
                        organization_id=org.id, armoire_id=armoire.id, parent_id=top.id, name=month.capitalize()
                    )
                    db.session.add(sub)
                    db.session.flush()
                    folder_ids.append((armoire.id, sub.id))
                    if a_index == 0 and year == 2026:
                        leaf = Folder(
                            organization_id=org.id, armoire_id=armoire.id, parent_id=sub.id, name="Factures reçues"
                        )
                        db.session.add(leaf)
                        db.session.flush()
                        folder_ids.append((armoire.id, leaf.id))
        now = datetime.now(UTC)
        rows = []
        for n in range(files):
            armoire_id, folder_id = folder_ids[n % len(folder_ids)]
            word = WORDS[n % len(WORDS)]
            extension, mime = EXTENSIONS[(n // len(WORDS)) % len(EXTENSIONS)]
            name = f"{word.capitalize() if n % 2 else word} {MONTHS[n % 12]} n°{n:06d}.{extension}"
            rows.append(
                {
                    "organization_id": org.id,
                    "armoire_id": armoire_id,
                    "folder_id": folder_id,
                    "name": name,
                    "size": 1024 + (n * 7919) % (4 * 1024 * 1024),
                    "mime_type": mime,
                    "created_by_id": users[n % len(users)].id,
                    "created_at": now - timedelta(hours=n),
                    "updated_at": now - timedelta(hours=n),
                    "deleted_at": now if n % 100 == 0 else None,
                }
            )
            if len(rows) == 10_000:
                db.session.execute(sa.insert(File), rows)
                rows = []
        if rows:
            db.session.execute(sa.insert(File), rows)
        db.session.commit()
        admin = db.session.get(User, users[0].id)
        _token, secret = api_services.create_token(admin, Actor(admin.organization_id, admin.id), name="bench", days=1)
        db.session.commit()
        analyze(db.engine)
        info = {
            "seconds": time.perf_counter() - started,
            "token": secret,
            "admin_id": admin.id,
            "org_id": org.id,
            "folders": len(folder_ids),
        }
        db.engine.dispose()
        return info


SEARCHES = {
    "name, accents folded (electricite)": "q=ELECTRICITE",
    "name, rare (n°012345)": "q=n%C2%B0012345",
    "name + sort by size desc": "q=facture&tri=-size",
    "folder path (factures recues)": "dossier=factures%20recues",
    "author + type": "auteur=diallo%203&type=pdf",
    "date range (last 30 days)": "du={since}&au={until}",
    "name + path + type + dates": "q=releve&dossier=annee%202026&type=pdf&du={year_start}",
}


KEPT_POSTGRES_DATABASE = "coffre_bench_search_kept"


@contextlib.contextmanager
def kept_database(backend: str, directory: Path):
    """Like ``running_database`` but kept: (URL, instance, secret, pepper, info or None).

    ``info`` is what ``seed`` returned for the database found there (None: seed it)."""
    directory.mkdir(parents=True, exist_ok=True)
    instance = directory / f"instance-{backend}"
    instance.mkdir(exist_ok=True)
    saved = directory / f"{backend}.json"
    info = json.loads(saved.read_text()) if saved.exists() else None
    secret = info["secret"] if info else secrets.token_urlsafe(48)
    pepper = info["pepper"] if info else secrets.token_urlsafe(48)
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'bench.db'}"
        if info is None:
            (directory / "bench.db").unlink(missing_ok=True)
    else:
        url = re.sub(r"/[^/]*$", f"/{KEPT_POSTGRES_DATABASE}", POSTGRES_ADMIN_URL)
        if info is None:
            admin_engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin_engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{KEPT_POSTGRES_DATABASE}" WITH (FORCE)')
                connection.exec_driver_sql(f'CREATE DATABASE "{KEPT_POSTGRES_DATABASE}"')
            admin_engine.dispose()
    yield url, instance, secret, pepper, info


def save_info(directory: Path, backend: str, info: dict, secret: str, pepper: str) -> None:
    (directory / f"{backend}.json").write_text(json.dumps({**info, "secret": secret, "pepper": pepper}))


def refresh_indexes(app) -> None:
    """Give a kept database the indexes the models declare today (create_all skips existing tables)."""
    from portal.documents import name_index
    from portal.documents.models import File, Folder
    from portal.extensions import db

    with app.app_context():
        with db.engine.begin() as connection:
            for table in (File.__table__, Folder.__table__):
                for index in table.indexes:
                    index.create(connection, checkfirst=True)
                table.dispatch.after_create(table, connection, checkfirst=True, _ddl_runner=None)
            if connection.dialect.name == "sqlite":
                # A trigram table created just now is empty; rebuilding it takes about a second.
                connection.exec_driver_sql(
                    f"INSERT INTO {name_index.FTS_TABLE}({name_index.FTS_TABLE}) VALUES ('rebuild')"
                )
        analyze(db.engine)
        db.engine.dispose()


def analyze(engine) -> None:
    """Planner statistics on PostgreSQL, as autovacuum keeps them. Not on SQLite: nothing in a
    deployment runs ANALYZE there, so the plans measured are those of a database without
    sqlite_stat1."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")


def search_values() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {
        "since": (today - timedelta(days=30)).isoformat(),
        "until": today.isoformat(),
        "year_start": f"{today.year}-01-01",
    }


def in_process(app, org_id: int, calls: int, explain: bool) -> dict[str, dict[str, float]]:
    """The search service alone, per search: p50/p95 of ``calls`` calls (and the plans)."""
    from urllib.parse import parse_qsl

    from werkzeug.datastructures import MultiDict

    from portal.extensions import db
    from portal.search import services
    from portal.search.routes import criteria_from

    results = {}
    with app.test_request_context():
        for label, query in {**SEARCHES, "page q=facture": "q=facture"}.items():
            args = MultiDict(parse_qsl(query.format(**search_values())))
            for _ in range(3):
                services.search_files(org_id, criteria_from(args))
                db.session.rollback()
            timings = []
            for _ in range(calls):
                started = time.perf_counter()
                found = services.search_files(org_id, criteria_from(args))
                timings.append((time.perf_counter() - started) * 1000)
                db.session.rollback()
            results[f"{label} [{found.page.total:,}]"] = {
                "p50": statistics.median(timings),
                "p95": statistics.quantiles(timings, n=100)[94],
            }
            if explain:
                print(f"\n--- {label}")
                for statement, plan in explain_search(org_id, criteria_from(args)):
                    print(statement)
                    print("  " + "\n  ".join(plan))
    return results


def explain_search(org_id: int, criteria) -> list[tuple[str, list[str]]]:
    """Each statement one search runs, with its plan (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE)."""
    from sqlalchemy import event

    from portal.extensions import db
    from portal.search import services

    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        services.search_files(org_id, criteria)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    db.session.rollback()
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, COSTS OFF) "
    plans = []
    with engine.connect() as connection:
        for statement, parameters in seen:
            rows = connection.exec_driver_sql(prefix + statement, parameters).all()
            plans.append((" ".join(statement.split())[:300], [str(row[-1]) for row in rows]))
    return plans


def report(title: str, results: dict[str, dict[str, float]], floor: dict[str, float] | None) -> None:
    print(f"\n{title}")
    print(f"{'request [matches]':<58}{'p50 ms':>9}{'p95 ms':>9}{'p95/floor':>11}{'p95/target':>12}")
    for label, figures in results.items():
        ratio = f"{figures['p95'] / floor['p95']:>11.1f}" if floor else f"{'':>11}"
        print(f"{label:<58}{figures['p50']:>9.1f}{figures['p95']:>9.1f}{ratio}{figures['p95'] / TARGET_MS:>12.2f}")


def run(backend: str, args: argparse.Namespace) -> None:
    keep = Path(args.keep) if args.keep else None
    database = kept_database(backend, keep) if keep else contextlib.nullcontext()
    with database as kept, contextlib.ExitStack() as stack:
        if kept:
            url, instance, secret, pepper, info = kept
            if info and info.get("files") != args.files:
                raise SystemExit(f"{keep} holds {info.get('files'):,} files: use another --keep directory")
        else:
            url, instance, secret, pepper = stack.enter_context(running_database(backend))
            info = None
        app = build_app(url, instance, secret, pepper)
        if info is None:
            print(f"[{backend}] seeding {args.files:,} files…", flush=True)
            info = seed(app, args.files)
            print(f"[{backend}] seeded in {info['seconds']:.1f} s ({info['folders']:,} folders)", flush=True)
            if keep:
                save_info(keep, backend, {**info, "files": args.files}, secret, pepper)
        else:
            print(f"[{backend}] reusing the {args.files:,} files seeded in {keep}", flush=True)
            refresh_indexes(app)
        if args.in_process:
            results = in_process(app, info["org_id"], args.calls, args.explain)
            report(
                f"[{backend}] {args.files:,} files, search service in process, {args.calls} calls each", results, None
            )
        if args.requests:
            serve(backend, app, url, instance, secret, pepper, info, args)


def serve(backend, app, url, instance, secret, pepper, info, args) -> None:
    server, base = start_gunicorn(portal_env(url, instance, secret, pepper), args.workers)
    try:
        cookie = session_cookie(app, info["admin_id"])
        client = httpx.Client(base_url=base, cookies={"coffre_session": cookie}, timeout=60)
        api = {"Authorization": f"Bearer {info['token']}"}
        requests = args.requests
        floor = measure(client, "/healthz", requests)
        results = {"healthz (floor)": floor}
        for label, query in SEARCHES.items():
            query = query.format(**search_values())
            total = client.get(f"/api/v1/recherche?{query}", headers=api).json()["total"]
            results[f"API {label} [{total:,}]"] = measure(client, f"/api/v1/recherche?{query}", requests, headers=api)
        results["page (HTMX) q=facture"] = measure(
            client, "/recherche?q=facture", requests, headers={"HX-Request": "true"}, expect="search-hit"
        )
        report(
            f"[{backend}] {args.files:,} files, gunicorn -w {args.workers}, {requests} requests each", results, floor
        )
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="keep the seeded databases in DIR and reuse them")
    parser.add_argument("--in-process", action="store_true", help="also time the search service alone")
    parser.add_argument("--calls", type=int, default=40, help="calls per search with --in-process")
    parser.add_argument("--explain", action="store_true", help="print the query plans (with --in-process)")
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        run(backend, args)


if __name__ == "__main__":
    main()
