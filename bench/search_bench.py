"""Global search benchmark: 100,000 files behind the real server (gunicorn), SQLite and PostgreSQL.

Seeds one organisation with 5 armoires, 492 folders (up to three levels) and ``--files`` files with
French, accented names (bulk Core inserts: the ``name_key`` default derives each sort key from
the name, as the ORM does on every write), then measures p50/p95 of ``GET /api/v1/recherche``
and of the ``/recherche`` page (HTMX fragment) for several searches, each against ``/healthz``
measured in the same run as the floor. The issue's target is p95 < 100 ms.

    .venv/bin/python bench/search_bench.py --backend sqlite
    .venv/bin/python bench/search_bench.py --backend both --files 100000

PostgreSQL uses a throwaway database ``coffre_bench_<pid>`` (created, then dropped).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.journal_bench import build_app, measure, session_cookie  # noqa: E402
from bench.server import portal_env, running_database, start_gunicorn  # noqa: E402

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
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
        info = {
            "seconds": time.perf_counter() - started,
            "token": secret,
            "admin_id": admin.id,
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


def run(backend: str, files: int, requests: int, workers: int) -> None:
    with running_database(backend) as (url, instance, secret, pepper):
        app = build_app(url, instance, secret, pepper)
        print(f"[{backend}] seeding {files:,} files…", flush=True)
        info = seed(app, files)
        print(f"[{backend}] seeded in {info['seconds']:.1f} s ({info['folders']:,} folders)", flush=True)
        server, base = start_gunicorn(portal_env(url, instance, secret, pepper), workers)
        try:
            cookie = session_cookie(app, info["admin_id"])
            client = httpx.Client(base_url=base, cookies={"coffre_session": cookie}, timeout=60)
            api = {"Authorization": f"Bearer {info['token']}"}
            today = datetime.now(UTC).date()
            values = {
                "since": (today - timedelta(days=30)).isoformat(),
                "until": today.isoformat(),
                "year_start": f"{today.year}-01-01",
            }
            floor = measure(client, "/healthz", requests)
            results = {"healthz (floor)": floor}
            for label, query in SEARCHES.items():
                query = query.format(**values)
                total = client.get(f"/api/v1/recherche?{query}", headers=api).json()["total"]
                results[f"API {label} [{total:,}]"] = measure(
                    client, f"/api/v1/recherche?{query}", requests, headers=api
                )
            results["page (HTMX) q=facture"] = measure(
                client, "/recherche?q=facture", requests, headers={"HX-Request": "true"}, expect="search-hit"
            )
            print(f"\n[{backend}] {files:,} files, gunicorn -w {workers}, {requests} requests each")
            print(f"{'request [matches]':<58}{'p50 ms':>9}{'p95 ms':>9}{'p95/floor':>11}{'p95/target':>12}")
            for label, figures in results.items():
                print(
                    f"{label:<58}{figures['p50']:>9.1f}{figures['p95']:>9.1f}"
                    f"{figures['p95'] / floor['p95']:>11.1f}{figures['p95'] / TARGET_MS:>12.2f}"
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
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        run(backend, args.files, args.requests, args.workers)


if __name__ == "__main__":
    main()
