"""Benchmark data for the dashboards: one organisation with a large journal and many files.

Rows are inserted in bulk (no blobs are written: the files are figures only, their
versions have no storage key, so they cannot be downloaded) and the journal keeps a real
SHA-256 chain, so ``flask journal verify`` still passes. The rollups are then recounted
once with ``rollups.rebuild``, as after any bulk import, and the loaded tables analysed
(and vacuumed on PostgreSQL).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from portal.audit import bulk
from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.dashboard import rollups
from portal.documents.models import Armoire, File, FileVersion
from portal.extensions import db
from portal.organizations.models import Organization
from portal.security.passwords import hash_password

ACTIONS = (
    "file.downloaded",
    "file.downloaded",
    "file.downloaded",
    "file.added",
    "file.modified",
    "file.renamed",
    "file.deleted",
    "user.login",
)
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "coffre-desktop/1",
)
BATCH = 10_000


@dataclass
class Seeded:
    organization_id: int
    user_ids: list[int]
    armoire_ids: list[int]
    file_ids: tuple[int, int]


def seed(*, entries: int, files: int, members: int = 20, armoires: int = 20, password: str | None = None) -> Seeded:
    """Create and commit the organisation, its members, armoires, files and journal."""
    org = Organization(name=f"Banc d'essai {secrets.token_hex(2)}", require_2fa=False)
    db.session.add(org)
    db.session.flush()
    password_hash = hash_password(password or secrets.token_urlsafe(16))
    users = [
        User(
            organization_id=org.id,
            email=f"membre{number}-{org.id}@bench.test",
            name=f"Membre {number}",
            role="admin" if number == 0 else ("contributeur" if number % 2 else "lecteur"),
            password_hash=password_hash,
            two_factor_method="totp" if number % 3 == 0 else None,
        )
        for number in range(members)
    ]
    boxes = [Armoire(organization_id=org.id, name=f"Armoire {number:02d}") for number in range(armoires)]
    db.session.add_all(users + boxes)
    db.session.commit()
    org_id = org.id
    user_ids = [user.id for user in users]
    armoire_ids = [box.id for box in boxes]
    now = datetime.now(UTC)
    file_ids = _files(org_id, user_ids, armoire_ids, files, now)
    _journal(org_id, user_ids, armoire_ids, file_ids, entries, now)
    rollups.rebuild(org_id)
    db.session.commit()
    _settle()
    return Seeded(org_id, user_ids, armoire_ids, file_ids)


def _settle() -> None:
    """Planner statistics for the bulk-loaded tables and, on PostgreSQL, their visibility map.

    Autovacuum would do both some minutes later; until then the planner works from empty
    statistics, and the rollups' covering indexes cannot be read index-only (every row
    would be checked in the table), so the figures measured right after a seed would be
    those of no database that has been running for a while.
    """
    tables = [model.__tablename__ for model in (AuditEntry, File, FileVersion, *rollups.ROLLUP_MODELS)]
    if db.engine.dialect.name == "postgresql":
        # VACUUM cannot run in a transaction block.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(tables)}")
        return
    # SQLite: in a transaction of its own (the engine's "begin" hook opens one even in autocommit).
    for table in tables:
        db.session.execute(text(f"ANALYZE {table}"))
    db.session.commit()


def _files(org_id: int, user_ids: list[int], armoire_ids: list[int], count: int, now: datetime) -> tuple[int, int]:
    first = None
    last = None
    for start in range(0, count, BATCH):
        numbers = range(start, min(start + BATCH, count))
        file_rows = [
            {
                "organization_id": org_id,
                "armoire_id": armoire_ids[n % len(armoire_ids)],
                "name": f"document-{n:06d}.pdf",
                # Sizes spread from 1 KiB to about 5 MiB, a few armoires larger than others.
                "size": 1024 + (n * 7919) % (5 * 1024 * 1024) * (1 + n % 3),
                "mime_type": "application/pdf",
                "created_by_id": user_ids[n % len(user_ids)],
                "created_at": now - timedelta(minutes=n),
                "updated_at": now - timedelta(minutes=n),
                "deleted_at": now if n % 50 == 0 else None,
            }
            for n in numbers
        ]
        # Core inserts of the tables: the ORM's per-row bookkeeping is most of a bulk insert's time.
        returning_ids = File.__table__.insert().returning(File.id, sort_by_parameter_order=True)
        ids = list(db.session.execute(returning_ids, file_rows).scalars())
        first = ids[0] if first is None else first
        last = ids[-1]
        db.session.execute(
            FileVersion.__table__.insert(),
            [
                {
                    "organization_id": org_id,
                    "uid": secrets.token_hex(16),
                    "file_id": file_id,
                    "number": 1,
                    "size": row["size"],
                    "mime_type": row["mime_type"],
                    "author_id": row["created_by_id"],
                    "created_at": row["created_at"],
                }
                for file_id, row in zip(ids, file_rows, strict=True)
            ],
        )
        db.session.commit()
    return (first or 0, last or 0)


def _journal(
    org_id: int,
    user_ids: list[int],
    armoire_ids: list[int],
    file_ids: tuple[int, int],
    count: int,
    now: datetime,
) -> None:
    """``count`` entries over the last 365 days, oldest first, with a real hash chain."""
    start = now - timedelta(days=365)
    step = timedelta(days=365) / max(count, 1)
    first_file, last_file = file_ids
    span = max(last_file - first_file + 1, 1)

    def entries() -> Iterator[dict[str, Any]]:
        for seq in range(1, count + 1):
            action = ACTIONS[seq % len(ACTIONS)]
            user_id = user_ids[(seq * 31) % len(user_ids)]
            file_id = first_file + (seq * 104729) % span
            login = action == "user.login"
            yield {
                "chain_id": org_id,
                "seq": seq,
                "organization_id": org_id,
                "user_id": user_id,
                "action": action,
                "target_type": "user" if login else "file",
                "target_id": user_id if login else file_id,
                "target_label": None if login else f"document-{file_id - first_file:06d}.pdf",
                "created_at": start + step * seq,
                "ip": f"192.0.2.{seq % 250 + 1}",
                "user_agent": AGENTS[seq % len(AGENTS)],
                "details": {"armoire": armoire_ids[(file_id - first_file) % len(armoire_ids)]}
                if action == "file.added"
                else None,
            }

    bulk.write_chain(org_id, entries())
    db.session.commit()
