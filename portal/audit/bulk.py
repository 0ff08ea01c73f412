"""Writing a whole journal chain at once (benchmark seeds), in the caller's transaction.

``record`` appends one entry at a time behind the chain head's row lock; a seed of a
million entries cannot afford that, nor the ORM's per-row work. Here the hashes are
computed in one pass (the same ``canonical_content`` / ``compute_hash`` as ``record``, so
``flask journal verify`` checks them like any other entry) and the rows go to the
database by ``COPY`` on PostgreSQL and by one Core ``executemany`` per batch on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import islice
from typing import Any

from portal.audit.models import AuditChainHead, AuditEntry
from portal.audit.services import GENESIS_HASH, canonical_content, compute_hash
from portal.extensions import db

# The fields ``canonical_content`` covers (hash version 1), then the two hashes.
FIELDS = (
    "chain_id",
    "seq",
    "organization_id",
    "user_id",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "created_at",
    "ip",
    "user_agent",
    "details",
)
COLUMNS = (*FIELDS, "prev_hash", "entry_hash")
BATCH = 10_000


def _chained(entries: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    prev_hash = GENESIS_HASH
    for fields in entries:
        entry_hash = compute_hash(prev_hash, canonical_content(**fields))
        yield {**fields, "prev_hash": prev_hash, "entry_hash": entry_hash}
        prev_hash = entry_hash


def _copy(rows: Iterable[dict[str, Any]]) -> None:
    cursor = db.session.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {AuditEntry.__tablename__} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            # COPY takes the JSON column as its text: psycopg has no default adaptation of a dict.
            details = row["details"]
            values = {**row, "details": None if details is None else json.dumps(details)}
            copy.write_row([values[name] for name in COLUMNS])


def _executemany(rows: Iterable[dict[str, Any]]) -> None:
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        db.session.execute(AuditEntry.__table__.insert(), batch)


def write_chain(chain_id: int, entries: Iterable[dict[str, Any]]) -> int:
    """Write a new chain, oldest first, and its head; return how many entries (flushed).

    Each entry is a dict of ``FIELDS`` numbered ``seq`` 1, 2, … in ``chain_id``; the chain
    must not exist yet (its head row is inserted, not moved forward).
    """
    count = 0
    last_hash = GENESIS_HASH

    def counted(rows: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        nonlocal count, last_hash
        for row in rows:
            if row["chain_id"] != chain_id or row["seq"] != count + 1:
                raise ValueError(f"entry {count + 1} of chain {chain_id} is numbered {row['chain_id']}/{row['seq']}")
            count += 1
            last_hash = row["entry_hash"]
            yield row

    rows = counted(_chained(entries))
    if db.engine.dialect.name == "postgresql":
        _copy(rows)
    else:
        _executemany(rows)
    db.session.add(AuditChainHead(chain_id=chain_id, seq=count, head_hash=last_hash))
    db.session.flush()
    return count
