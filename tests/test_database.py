"""SQLite transaction modes: writers queue, readers never block them."""

from __future__ import annotations

import pytest
from flask import g

from portal.database import _wants_immediate, write_transaction, writes_on_get


@pytest.mark.parametrize(("method", "immediate"), [("GET", False), ("HEAD", False), ("POST", True), ("DELETE", True)])
def test_requests_begin_immediate_only_when_they_write(app, method, immediate):
    with app.test_request_context("/", method=method):
        assert _wants_immediate() is immediate


def test_work_outside_requests_is_deferred_unless_declared(app):
    assert _wants_immediate() is False
    with write_transaction():
        assert _wants_immediate() is True
    assert _wants_immediate() is False


def test_a_get_view_that_writes_is_immediate_until_it_returns(app):
    seen = {}

    @app.route("/_writes")
    @writes_on_get
    def writing_view():
        seen["during"] = _wants_immediate()
        return "ok"

    writing_view.__coffre_public__ = True
    with app.test_request_context("/_writes"):
        app.preprocess_request()
        assert g.sqlite_write_intent is True
        app.view_functions["writing_view"]()
        assert seen["during"] is True
        assert _wants_immediate() is False  # a streamed body's reads stay deferred


def test_a_reads_first_view_is_deferred_until_its_read_phase_ends(app):
    from portal.database import end_read_phase, reads_first
    from portal.extensions import csrf

    seen = {}

    @app.route("/_reads_first", methods=["POST"])
    @reads_first
    def reads_first_view():
        seen["reading"] = _wants_immediate()
        end_read_phase()
        seen["writing"] = _wants_immediate()
        return "ok"

    reads_first_view.__coffre_public__ = True
    csrf.exempt(reads_first_view)
    with app.test_request_context("/_reads_first", method="POST"):
        app.preprocess_request()
        app.view_functions["reads_first_view"]()
    assert seen == {"reading": False, "writing": True}


def _sqlite_only():
    from portal.extensions import db

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")


def test_a_queued_writer_gets_the_lock_as_soon_as_it_is_free(app):
    """SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries: a writer
    queued behind a 40 ms transaction got the lock at 53 ms. BEGIN IMMEDIATE now retries in
    steps of at most a millisecond (two real threads, the real database file)."""
    import threading
    import time

    from portal.database import write_transaction
    from portal.extensions import db

    _sqlite_only()
    db.session.commit()
    late = []
    for _ in range(5):
        holder = db.engine.raw_connection()
        holder.execute("BEGIN IMMEDIATE")
        released: list[float] = []
        acquired: list[float] = []

        def writer(acquired: list[float] = acquired) -> None:
            with app.app_context(), write_transaction(), db.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")  # begins: waits for the write lock
                acquired.append(time.monotonic())
                connection.rollback()

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.04)
        released.append(time.monotonic())
        holder.rollback()
        holder.close()
        thread.join(timeout=30)
        late.append(acquired[0] - released[0])
    late.sort()
    assert late[2] < 0.006, late


def test_the_busy_timeout_still_applies_to_other_statements(app):
    from portal.database import BUSY_TIMEOUT_MS, write_transaction
    from portal.extensions import db

    _sqlite_only()
    db.session.commit()
    with write_transaction(), db.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == BUSY_TIMEOUT_MS
        connection.rollback()


def test_a_write_lock_never_freed_still_times_out(app, monkeypatch):
    import sqlalchemy as sa

    from portal import database
    from portal.database import write_transaction
    from portal.extensions import db

    _sqlite_only()
    db.session.commit()
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 200)  # the real 30 s, shortened
    holder = db.engine.raw_connection()
    holder.execute("BEGIN IMMEDIATE")
    try:
        with write_transaction(), db.engine.connect() as connection, pytest.raises(sa.exc.OperationalError) as caught:
            connection.exec_driver_sql("SELECT 1")
        assert "locked" in str(caught.value)
    finally:
        holder.rollback()
        holder.close()


def test_connections_are_pinged_before_use_only_over_a_network(app):
    """PostgreSQL's connections can be dropped by the server or a proxy; a SQLite file's
    cannot, and the ping was one more statement per checkout inside an upload's write lock."""
    from portal.extensions import db

    pings: list[str] = []
    dialect = db.engine.dialect
    original = dialect.do_ping
    dialect.do_ping = lambda connection: pings.append("ping") or original(connection)
    try:
        for _ in range(2):
            with db.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
    finally:
        del dialect.do_ping
    assert bool(pings) is (db.engine.dialect.name != "sqlite")
