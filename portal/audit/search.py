"""The index behind the journal's free-text filter (a substring of the target label).

``lower(target_label) LIKE '%…%'`` cannot use a B-tree, so each dialect gets a trigram
index: on PostgreSQL a ``pg_trgm`` GIN index on ``lower(target_label)``, which the same
LIKE uses as it stands; on SQLite an FTS5 ``trigram`` table over the journal (external
content, kept in step by triggers) that pre-selects rows containing every trigram of the
text, the same LIKE then deciding exactly, so results are those of the plain scan.

Neither object can be declared in the models: they are created with the table (so that
``create_all`` in tests and benchmarks has them) and by the migration ``a1c0ff3e0007``,
and the model/migration comparison skips them (``is_search_object``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from portal.database import is_trigram_object

FTS_TABLE = "journal_activite_fts"
TRGM_INDEX = "ix_journal_activite_label_trgm"
# Text shorter than a trigram has no trigram to look up: such a search scans, as before.
MIN_INDEXED_LENGTH = 3

# detail=none and columnsize=0: only "which rows contain this trigram" is needed (no
# phrases, positions or ranking), which keeps the index and each insert small.
SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS journal_activite_fts USING fts5(target_label, "
    "content='journal_activite', content_rowid='id', tokenize='trigram', detail='none', columnsize=0)",
    "CREATE TRIGGER IF NOT EXISTS journal_activite_fts_ai AFTER INSERT ON journal_activite BEGIN "
    "INSERT INTO journal_activite_fts(rowid, target_label) VALUES (new.id, new.target_label); END",
    "CREATE TRIGGER IF NOT EXISTS journal_activite_fts_ad AFTER DELETE ON journal_activite BEGIN "
    "INSERT INTO journal_activite_fts(journal_activite_fts, rowid, target_label) "
    "VALUES ('delete', old.id, old.target_label); END",
    "CREATE TRIGGER IF NOT EXISTS journal_activite_fts_au AFTER UPDATE OF target_label ON journal_activite BEGIN "
    "INSERT INTO journal_activite_fts(journal_activite_fts, rowid, target_label) "
    "VALUES ('delete', old.id, old.target_label); "
    "INSERT INTO journal_activite_fts(rowid, target_label) VALUES (new.id, new.target_label); END",
)
POSTGRESQL_DDL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_journal_activite_label_trgm ON journal_activite "
    "USING gin (lower(target_label) gin_trgm_ops)",
)

fts = sa.table(FTS_TABLE, sa.column("rowid", sa.Integer), sa.column(FTS_TABLE))


def is_search_object(name: str | None, type_: str) -> bool:
    """The index's own tables (FTS5 and its shadow tables) and index, unknown to the models."""
    return is_trigram_object(name, type_, FTS_TABLE, TRGM_INDEX)


def fts_query(text: str) -> str:
    """An FTS5 query matching rows that contain every trigram of ``text`` (each one quoted)."""
    trigrams = dict.fromkeys(text[i : i + 3] for i in range(len(text) - 2))
    return " AND ".join('"' + trigram.replace('"', '""') + '"' for trigram in trigrams)


def _create(target: sa.Table, connection: sa.Connection, **_: Any) -> None:
    ddl = {"sqlite": SQLITE_DDL, "postgresql": POSTGRESQL_DDL}.get(connection.dialect.name, ())
    for statement in ddl:
        connection.exec_driver_sql(statement)


def _drop(target: sa.Table, connection: sa.Connection, **_: Any) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TABLE IF EXISTS journal_activite_fts")


def attach(table: sa.Table) -> None:
    event.listen(table, "after_create", _create)
    event.listen(table, "before_drop", _drop)
