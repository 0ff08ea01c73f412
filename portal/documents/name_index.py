"""The trigram index behind the name filter (a substring of ``fichiers.name_key``).

``name_key LIKE '%…%'`` cannot use a B-tree, so at 100,000 files every name search and its
count read the whole live-name index. As for the journal (portal/audit/search.py), each
dialect gets a trigram index: on PostgreSQL a ``pg_trgm`` GIN index on ``name_key``, which
the LIKE uses as it stands, created only where the extension exists or can be created (a
server without it keeps the plain scan, same results); on SQLite an FTS5 ``trigram`` table
over ``fichiers`` (external content, kept in step by triggers) that pre-selects the rows
holding every trigram of the key, the same LIKE then deciding exactly.

Neither object can be declared in the models: they are created with the table (``create_all``
in tests and benchmarks) and by the migration ``5eac00000001``, and the model/migration
comparison skips them (``is_search_object``).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from portal.database import is_trigram_object

logger = logging.getLogger(__name__)

FTS_TABLE = "fichiers_fts"
TRGM_INDEX = "ix_fichiers_name_key_trgm"
# A key shorter than a trigram has no trigram to look up: such a search scans, as before.
MIN_INDEXED_LENGTH = 3

# detail=none, columnsize=0: only "which files contain this trigram" is asked.
SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS fichiers_fts USING fts5(name_key, "
    "content='fichiers', content_rowid='id', tokenize='trigram', detail='none', columnsize=0)",
    "CREATE TRIGGER IF NOT EXISTS fichiers_fts_ai AFTER INSERT ON fichiers BEGIN "
    "INSERT INTO fichiers_fts(rowid, name_key) VALUES (new.id, new.name_key); END",
    "CREATE TRIGGER IF NOT EXISTS fichiers_fts_ad AFTER DELETE ON fichiers BEGIN "
    "INSERT INTO fichiers_fts(fichiers_fts, rowid, name_key) VALUES ('delete', old.id, old.name_key); END",
    "CREATE TRIGGER IF NOT EXISTS fichiers_fts_au AFTER UPDATE OF name_key ON fichiers BEGIN "
    "INSERT INTO fichiers_fts(fichiers_fts, rowid, name_key) VALUES ('delete', old.id, old.name_key); "
    "INSERT INTO fichiers_fts(rowid, name_key) VALUES (new.id, new.name_key); END",
)
POSTGRESQL_INDEX = f"CREATE INDEX IF NOT EXISTS {TRGM_INDEX} ON fichiers USING gin (name_key gin_trgm_ops)"

fts = sa.table(FTS_TABLE, sa.column("rowid", sa.Integer), sa.column(FTS_TABLE))


def is_search_object(name: str | None, type_: str) -> bool:
    """The index's own tables (FTS5 and its shadow tables) and GIN index, unknown to the models."""
    return is_trigram_object(name, type_, FTS_TABLE, TRGM_INDEX)


def uses_fts(key: str, dialect: str) -> bool:
    return dialect == "sqlite" and len(key) >= MIN_INDEXED_LENGTH


def create_trigram_index(connection: sa.Connection) -> bool:
    """The GIN index on PostgreSQL when pg_trgm is there or may be created; False without it.

    The attempt runs in a savepoint: a refused CREATE EXTENSION (not installed on the server,
    or not allowed to this role) must not abort the caller's transaction."""
    installed = connection.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first()
    if installed is None:
        available = connection.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").first()
        if available is None:
            logger.warning("pg_trgm is not available: name searches scan the name index")
            return False
        try:
            with connection.begin_nested():
                connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError as error:
            logger.warning("pg_trgm cannot be created (%s): name searches scan the name index", error.orig)
            return False
    connection.exec_driver_sql(POSTGRESQL_INDEX)
    return True


def _create(target: sa.Table, connection: sa.Connection, **_: Any) -> None:
    if connection.dialect.name == "sqlite":
        for statement in SQLITE_DDL:
            connection.exec_driver_sql(statement)
    elif connection.dialect.name == "postgresql":
        create_trigram_index(connection)


def _drop(target: sa.Table, connection: sa.Connection, **_: Any) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS_TABLE}")


def attach(table: sa.Table) -> None:
    event.listen(table, "after_create", _create)
    event.listen(table, "before_drop", _drop)
