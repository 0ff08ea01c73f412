"""Journal benchmark: a large journal behind the real server.

Fills journal_activite with ``--count`` entries (real SHA-256 chain) over ``--users``
members of one organisation, starts gunicorn on 127.0.0.1, signs in as the admin, and
measures p50/p95 latency of the first /journal page, a filtered page (user + action),
a free-text page and a deep keyset page, plus CSV export throughput and a full chain
verification. /healthz through the same server is the floor.

    .venv/bin/python bench/journal_bench.py --backend sqlite
    .venv/bin/python bench/journal_bench.py --backend postgresql --count 1000000

The database is a throwaway one from ``bench.server.running_database``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.server import portal_env, running_database, start_gunicorn  # noqa: E402

TARGET_MS = 100.0
ACTIONS = ("file.added", "file.modified", "file.downloaded", "file.deleted", "version.created", "user.login")


def build_app(url: str, instance: Path, secret: str, pepper: str):
    os.environ["COFFRE_INSTANCE_DIR"] = str(instance)
    from portal import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": secret,
            "PASSWORD_PEPPER": pepper,
            "BCRYPT_ROUNDS": 4,
            "SCHEDULER_ENABLED": False,
        }
    )


def generate(count: int, org_id: int, user_ids: list[int]):
    """Yield journal entries' fields, oldest first (``bulk.write_chain`` links them)."""
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / max(count, 1)
    for seq in range(1, count + 1):
        action = ACTIONS[seq % len(ACTIONS)]
        # A rare word for the free-text filter: about one entry in 5,000.
        label = f"Rapport-{seq % 9973}-{'rarissime' if seq % 5000 == 0 else 'courant'}.pdf"
        yield {
            "chain_id": org_id,
            "seq": seq,
            "organization_id": org_id,
            "user_id": user_ids[seq % len(user_ids)],
            "action": action,
            "target_type": "user" if action == "user.login" else "file",
            "target_id": seq % 100_000,
            "target_label": label,
            "created_at": (start + step * seq).replace(microsecond=(seq * 7) % 1_000_000),
            "ip": f"10.0.{seq % 250}.{seq % 200}",
            "user_agent": "Mozilla/5.0 (bench)",
            "details": {"size": seq * 13 % 9_000_000} if action == "file.added" else None,
        }


def fill(app, count: int, users: int) -> dict[str, object]:
    from portal.audit import bulk
    from portal.auth.models import User
    from portal.extensions import db
    from portal.organizations.models import Organization
    from portal.security.passwords import hash_password

    with app.app_context():
        db.create_all()
        org = Organization(name="Banc d'essai", require_2fa=False)
        db.session.add(org)
        db.session.flush()
        password_hash = hash_password("bench-password-" + secrets.token_hex(4))
        members = []
        for number in range(users):
            role = "admin" if number == 0 else ("contributeur" if number % 2 else "lecteur")
            members.append(
                User(
                    organization_id=org.id,
                    email=f"membre{number}@bench.test",
                    name=f"Membre {number}",
                    role=role,
                    password_hash=password_hash,
                )
            )
        db.session.add_all(members)
        db.session.commit()
        org_id, user_ids = org.id, [member.id for member in members]
        started = time.perf_counter()
        bulk.write_chain(org_id, generate(count, org_id, user_ids))
        db.session.commit()
        fill_seconds = time.perf_counter() - started
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
        return {"org_id": org_id, "user_ids": user_ids, "fill_seconds": fill_seconds}


def session_cookie(app, admin_id: int) -> str:
    """A signed session for the admin, as the login form would leave it (test-only helper)."""
    from portal.auth.models import User
    from portal.auth.sessions import open_session_for
    from portal.extensions import db

    with app.app_context():
        admin = db.session.get(User, admin_id)
        data: dict[str, object] = {}
        open_session_for(admin, data)
        db.session.commit()  # the server-side session row must exist before the cookie is used
        return app.session_interface.get_signing_serializer(app).dumps(data)


def measure(
    client: httpx.Client, path: str, requests: int, *, expect: str | None = None, headers: dict | None = None
) -> dict[str, float]:
    for _ in range(5):
        client.get(path, headers=headers)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}")
        if expect is not None and expect not in response.text:
            raise SystemExit(f"{path}: unexpected body")
    quantiles = statistics.quantiles(timings, n=100)
    return {"p50": statistics.median(timings), "p95": quantiles[94], "max": max(timings)}


def export_throughput(client: httpx.Client, path: str) -> dict[str, float]:
    started = time.perf_counter()
    size = 0
    rows = 0
    with client.stream("GET", path, timeout=600) as response:
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}")
        for chunk in response.iter_bytes():
            size += len(chunk)
            rows += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    return {
        "rows": rows - 1,
        "seconds": seconds,
        "rows_per_s": (rows - 1) / seconds,
        "mib_per_s": size / seconds / 2**20,
    }


def search_in_process(app, org_id: int, text: str, repeat: int) -> dict[str, dict[str, float]]:
    """The label search's query, indexed (as the page runs it) and as the plain scan it replaced.

    Same data, same process, interleaved: the ratio does not depend on the machine's load.
    """
    from sqlalchemy import func, select
    from sqlalchemy import text as text_sql

    from portal.audit import queries
    from portal.audit.models import AuditEntry
    from portal.extensions import db

    journal_filter = queries.JournalFilter(text=text)
    pattern = f"%{queries._escape_like(text.lower())}%"
    scan = (
        select(AuditEntry)
        .where(AuditEntry.organization_id == org_id, func.lower(AuditEntry.target_label).like(pattern, escape="\\"))
        .order_by(AuditEntry.id.desc())
        .limit(queries.PAGE_SIZE + 1)
    )
    timings: dict[str, list[float]] = {"indexed": [], "scan (before)": []}
    with app.app_context():
        for _ in range(repeat):
            started = time.perf_counter()
            indexed_ids = [entry.id for entry in queries.journal_page(org_id, journal_filter).items]
            timings["indexed"].append((time.perf_counter() - started) * 1000)
            db.session.rollback()
            if db.engine.dialect.name == "postgresql":
                # Same SQL as the page: keep the planner off the GIN index (it only does bitmap scans).
                db.session.execute(text_sql("SET LOCAL enable_bitmapscan = off"))
            started = time.perf_counter()
            scan_ids = [entry.id for entry in db.session.execute(scan).scalars()][: queries.PAGE_SIZE]
            timings["scan (before)"].append((time.perf_counter() - started) * 1000)
            db.session.rollback()
            if indexed_ids != scan_ids:
                raise SystemExit(f"search {text!r}: the indexed and scanned results differ")
        db.engine.dispose()
    return {
        label: {"p50": statistics.median(values), "p95": statistics.quantiles(values, n=100)[94]}
        for label, values in timings.items()
    }


def run(backend: str, count: int, users: int, requests: int, workers: int) -> None:
    with running_database(backend) as (url, instance, secret, pepper):
        app = build_app(url, instance, secret, pepper)
        print(f"[{backend}] filling {count:,} entries over {users} users…", flush=True)
        info = fill(app, count, users)
        print(f"[{backend}] filled in {info['fill_seconds']:.1f} s", flush=True)

        from portal.audit.verification import verify_chain
        from portal.extensions import db

        with app.app_context():
            started = time.perf_counter()
            result = verify_chain(info["org_id"])
            verify_seconds = time.perf_counter() - started
            db.session.rollback()
            db.engine.dispose()
        assert result.ok, result.problem
        print(f"[{backend}] verify_chain: {result.entries_checked:,} entries in {verify_seconds:.1f} s", flush=True)
        searches = {
            text: search_in_process(app, info["org_id"], text, max(20, requests // 2))
            for text in ("rarissime", "courant", "Rapport-17-")
        }

        env = portal_env(url, instance, secret, pepper)
        server, base = start_gunicorn(env, workers)
        try:
            cookie = session_cookie(app, info["user_ids"][0])
            client = httpx.Client(base_url=base, cookies={"coffre_session": cookie}, timeout=60)
            user = info["user_ids"][8]  # seq ≡ 8 (mod 50) meets file.downloaded (seq ≡ 2 mod 6)
            results = {
                "healthz (floor)": measure(client, "/healthz", requests),
                "first page": measure(client, "/journal", requests, expect="entree-"),
                "filtered (user + action)": measure(
                    client, f"/journal?utilisateur={user}&action=file.downloaded", requests, expect="entree-"
                ),
                "filtered HTMX fragment": measure(client, f"/journal?utilisateur={user}&type=file", requests),
                "deep keyset page (avant=mid)": measure(
                    client, f"/journal?avant={count // 2}", requests, expect="entree-"
                ),
                "free text (rare word)": measure(client, "/journal?q=rarissime", requests, expect="entree-"),
                "free text (common word)": measure(client, "/journal?q=courant", requests, expect="entree-"),
                # Incremental (from the newest signed checkpoint): the full pass was done above.
                "verification badge (HTMX)": measure(
                    client,
                    "/journal/verification",
                    max(20, requests // 10),
                    expect="badge-ok",
                    headers={"HX-Request": "true"},
                ),
            }
            print(f"\n[{backend}] {count:,} entries, {users} users, gunicorn -w {workers}, {requests} requests each")
            floor = results["healthz (floor)"]["p50"]
            print(f"{'page':<32}{'p50 ms':>9}{'p95 ms':>9}{'p95/target':>12}{'p50/floor':>11}")
            for label, figures in results.items():
                print(
                    f"{label:<32}{figures['p50']:>9.1f}{figures['p95']:>9.1f}"
                    f"{figures['p95'] / TARGET_MS:>12.2f}{figures['p50'] / floor:>11.1f}"
                )
            for label, path in (
                ("CSV export, whole journal", "/journal/export.csv"),
                ("CSV export, one user", f"/journal/export.csv?utilisateur={user}"),
            ):
                figures = export_throughput(client, path)
                print(
                    f"{label}: {figures['rows']:,} rows in {figures['seconds']:.1f} s = "
                    f"{figures['rows_per_s']:,.0f} rows/s, {figures['mib_per_s']:.1f} MiB/s"
                )
            print(f"verify_chain (in process): {result.entries_checked:,} entries in {verify_seconds:.1f} s")
            print(f"fill (with the search index maintained on insert): {info['fill_seconds']:.1f} s")
            print("label search in process (journal_page), indexed vs the scan it replaced:")
            for text, figures in searches.items():
                indexed, scan = figures["indexed"], figures["scan (before)"]
                print(
                    f"  q={text!r:<15} indexed p50 {indexed['p50']:.1f} ms p95 {indexed['p95']:.1f} ms | "
                    f"scan p50 {scan['p50']:.1f} ms p95 {scan['p95']:.1f} ms | "
                    f"p95 ratio {scan['p95'] / indexed['p95']:.1f}×"
                )
            client.close()
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--count", type=int, default=1_000_000, help="journal entries to generate (default 1,000,000)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="requests per measured page")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        run(backend, args.count, args.users, args.requests, args.workers)


if __name__ == "__main__":
    main()
