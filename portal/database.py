"""Declarative base, column types and engine settings shared by every feature."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
# How long a bookkeeping write (a last-use touch) may wait for SQLite's write lock before it
# is skipped: it is worth neither holding a page for busy_timeout nor failing it.
BOOKKEEPING_WAIT_MS = 1_000

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def dialect_insert(table, dialect_name: str):
    """``INSERT`` of ``table`` in the dialect that renders ``ON CONFLICT`` (PostgreSQL or SQLite)."""
    return (postgresql_insert if dialect_name == "postgresql" else sqlite_insert)(table)


def is_trigram_object(name: str | None, type_: str, fts_table: str, trgm_index: str) -> bool:
    """Whether ``name`` is one of a trigram index's objects, unknown to the models: the FTS5
    table and its shadow tables (SQLite), or the GIN index (PostgreSQL)."""
    if not name:
        return False
    if type_ == "table":
        return name == fts_table or name.startswith(fts_table + "_")
    return type_ == "index" and name == trgm_index


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no time zone type and hands back naive values; normalising here means
    the rest of the code only ever sees aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


BUSY_TIMEOUT_MS = 30_000
# Pauses between tries for the write lock (seconds), the last one repeated until the timeout.
_LOCK_RETRY_PAUSES = (0.0001, 0.0002, 0.0005, 0.001)


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection, _record) -> None:
    """Durable, strict SQLite: an acknowledged write survives a power cut."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy, not the driver, open transactions (see _begin_sqlite_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA secure_delete = ON")
    finally:
        cursor.close()


# In ``Connection.info``: the transaction in progress began IMMEDIATE, so it holds the write lock.
SQLITE_WRITE_LOCKED = "coffre_sqlite_write_locked"

_WRITE_INTENT: ContextVar[bool] = ContextVar("coffre_sqlite_write_intent", default=False)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@contextmanager
def write_transaction() -> Iterator[None]:
    """Mark work outside a request (jobs, threads) as writing: SQLite begins IMMEDIATE."""
    token = _WRITE_INTENT.set(True)
    try:
        yield
    finally:
        _WRITE_INTENT.reset(token)


def _wants_immediate() -> bool:
    from flask import g, has_request_context, request

    if _WRITE_INTENT.get():
        return True
    if has_request_context():
        if g.get("sqlite_reads_first"):
            return False
        return request.method in _UNSAFE_METHODS or bool(g.get("sqlite_write_intent"))
    return False


@event.listens_for(Engine, "begin")
def _begin_sqlite(connection) -> None:
    """Take SQLite's write lock up front in transactions that will write.

    In WAL mode a transaction that reads and then writes cannot wait for the write lock:
    it fails with SQLITE_BUSY(_SNAPSHOT) if another writer got there first. Requests with
    an unsafe method (and GET views marked with ``writes_on_get``, jobs in
    ``write_transaction``) therefore begin IMMEDIATE and queue on busy_timeout; plain reads
    stay DEFERRED so that they never block writers (a long export, a download stream).
    """
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    immediate = _wants_immediate()
    if immediate:
        _begin_immediate(raw)
    else:
        raw.execute("BEGIN")
    # Set at every begin, so it always describes the transaction in progress.
    connection.info[SQLITE_WRITE_LOCKED] = immediate


def _begin_immediate(raw: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so a writer
    queued behind a 3 ms transaction typically got the lock 5 ms after it was free, while the
    other worker sat idle too (small files bench: a tenth of the request time). Only this
    statement polls; every other one keeps busy_timeout.
    """
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        attempt = 0
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as error:
                busy = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    # The error callers would have seen from SQLAlchemy's own execution.
                    raise DBAPIError.instance("BEGIN IMMEDIATE", (), error, sqlite3.Error) from error
            time.sleep(_LOCK_RETRY_PAUSES[min(attempt, len(_LOCK_RETRY_PAUSES) - 1)])
            attempt += 1
    finally:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def writes_on_get(view):
    """Mark a GET view that also writes (a download's journal entry, a verification record).

    The flag must be known before the request's first query (loading the signed-in user), so
    ``init_app`` reads it in the very first ``before_request`` hook; it is cleared when the
    view returns, so that a streamed response's later reads stay DEFERRED.
    """
    from functools import wraps

    from flask import g

    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        finally:
            g.sqlite_write_intent = False

    wrapper.__coffre_writes__ = True
    return wrapper


def bookkeeping_write(statement) -> bool:
    """Run a request's bookkeeping write in a short transaction of its own; False if skipped.

    The request's transaction is ended first: in WAL mode a transaction that has read cannot
    wait for the write lock (SQLITE_BUSY at once, whatever busy_timeout says), one that starts
    with the write can. On SQLite it waits BOOKKEEPING_WAIT_MS at most, then gives up: the
    touch is retried by a later request, and a GET never fails for it. Nothing of the request
    may be pending: whatever it flushed is committed here.
    """
    from portal.extensions import db

    db.session.commit()
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    try:
        # A write request begins IMMEDIATE here, and may wait busy_timeout for the lock.
        connection = db.session.connection()
        if sqlite:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {BOOKKEEPING_WAIT_MS}")
        try:
            db.session.execute(statement)
        finally:
            if sqlite:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except OperationalError as error:
        if not (sqlite and isinstance(error.orig, sqlite3.OperationalError) and "locked" in str(error.orig)):
            raise
        db.session.rollback()
        logger.info("bookkeeping write skipped: the database is busy")
        return False
    db.session.commit()
    return True


def reads_first(view):
    """Mark an unsafe view whose first transaction only reads and which ends it itself with
    ``end_read_phase`` before it writes anything (an upload: T0 checks the target, the body
    is encrypted with no transaction open, T1 adds the rows).

    On SQLite that first transaction then begins DEFERRED: it neither waits for nor holds the
    write lock, so other writers' commits overlap this request's reads, body and blob fsyncs.
    A write-first statement in it (the session touch, a refusal's journal entry after its
    rollback) still waits for the lock as usual; a write after a read would fail with
    SQLITE_BUSY under contention, which is why only views whose first phase never writes are
    marked.
    """
    view.__coffre_reads_first__ = True
    return view


def end_read_phase() -> None:
    """The ``reads_first`` phase is over: the next SQLite transaction begins IMMEDIATE."""
    from flask import g, has_request_context

    if has_request_context():
        g.sqlite_reads_first = False


def init_app(app) -> None:
    from flask import g, request

    @app.before_request
    def _declare_write_intent() -> None:
        view = app.view_functions.get(request.endpoint or "")
        g.sqlite_write_intent = bool(getattr(view, "__coffre_writes__", False))
        g.sqlite_reads_first = bool(getattr(view, "__coffre_reads_first__", False))


def render_migration_item(type_: str, obj: object, autogen_context) -> str | bool:
    """Render our column types as plain SQLAlchemy ones so migrations never import the app."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False
