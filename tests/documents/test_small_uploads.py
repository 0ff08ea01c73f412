"""What one small upload costs the database: the statements it sends, which transactions
take SQLite's write lock, and nothing after the commit (docs/performance.md, small files)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEntry
from portal.documents.models import File, FileVersion
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import blob_files, multipart, post_multipart, upload


class StatementLog:
    """Every statement the engine sends (BEGIN included), and the commits and rollbacks.

    SQLite's BEGIN is sent on the driver's connection (portal.database), out of SQLAlchemy's
    sight: there the driver's own trace callback sees the statements."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.entries: list[str] = []

    def _note(self, statement: str) -> None:
        self.entries.append(" ".join(statement.split())[:200])

    def _statement(self, conn, cursor, statement, params, context, executemany):
        self._note(statement)

    def _trace(self, statement: str) -> None:
        # "-- " lines are the statements of triggers (the journal's search index), which
        # SQLite also reports by repeating the outer statement: neither is a round trip.
        if statement.startswith(("PRAGMA", "COMMIT", "ROLLBACK", "-- ")):
            return
        if self.entries and self.entries[-1] == " ".join(statement.split())[:200]:
            return
        self._note(statement)

    def _checkout(self, dbapi_connection, record, proxy):
        dbapi_connection.set_trace_callback(self._trace)

    def _checkin(self, dbapi_connection, record):
        dbapi_connection.set_trace_callback(None)

    def _commit(self, conn):
        self.entries.append("COMMIT")

    def _rollback(self, conn):
        self.entries.append("ROLLBACK")

    def _begin(self, conn):
        if not self.sqlite:
            self.entries.append("BEGIN")

    def _listeners(self):
        if self.sqlite:
            yield self.engine.pool, "checkout", self._checkout
            yield self.engine.pool, "checkin", self._checkin
        else:
            yield self.engine, "before_cursor_execute", self._statement
        yield self.engine, "commit", self._commit
        yield self.engine, "rollback", self._rollback
        yield self.engine, "begin", self._begin

    def __enter__(self) -> StatementLog:
        for target, name, fn in self._listeners():
            sa.event.listen(target, name, fn)
        return self

    def __exit__(self, *exc) -> None:
        for target, name, fn in self._listeners():
            sa.event.remove(target, name, fn)

    def queries(self) -> list[str]:
        return [e for e in self.entries if e not in ("COMMIT", "ROLLBACK") and not e.startswith("BEGIN")]

    def after_last_commit(self) -> list[str]:
        last = max(i for i, e in enumerate(self.entries) if e == "COMMIT")
        return [e for e in self.entries[last + 1 :] if e != "ROLLBACK"]


@pytest.fixture
def warm(contributor_client, armoire):
    """A first upload (creates the journal chain head) and a CSRF token for the next ones."""
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    assert upload(contributor_client, armoire.id, "premier.txt", b"un", token=token).status_code == 201
    return token


def test_an_htmx_upload_answers_without_touching_the_database_after_its_commit(contributor_client, armoire, warm):
    """The answer is built from values read before the commit: reloading the expired rows
    opened a third transaction (on SQLite an IMMEDIATE one, holding the write lock while the
    fragment was rendered)."""
    armoire_id = armoire.id
    with StatementLog(db.engine) as log:
        response = upload(contributor_client, armoire_id, "petit.txt", b"quelques octets", token=warm)
    assert response.status_code == 201
    assert "petit.txt" in response.text and "version 1" in response.text
    assert log.after_last_commit() == []


def test_a_new_version_answers_without_touching_the_database_after_its_commit(contributor_client, armoire, warm):
    file = db.session.execute(db.select(File)).scalar_one()
    body = multipart([("csrf_token", warm)], [("file", "premier.txt", b"deux")])
    url = f"/fichiers/{file.id}/version"
    with StatementLog(db.engine) as log:
        response = post_multipart(contributor_client, url, body, headers={"HX-Request": "true"})
    assert response.status_code == 201, response.text
    assert "version 2" in response.text
    assert log.after_last_commit() == []


def test_a_small_upload_sends_at_most_fifteen_statements_on_sqlite_seventeen_on_postgresql(
    contributor_client, armoire, warm
):
    """T0: the session, the armoire, and the quota with the usage (one statement; the trial
    quota applies to every organisation). T1: the organisation lock reading the quota, then
    the usage under it (two statements on PostgreSQL, see ``quota.lock_and_measure``; one on
    SQLite, whose IMMEDIATE transaction holds the write lock already), the file (inserted only
    if its armoire is still there), the master-key lock (a retire cannot erase the key's
    version meanwhile; PostgreSQL only, SQLite's write lock is that lock), its data key, its
    version, the file's current version, the storage counters (once for the file and its
    version), the journal's three, and the dashboard counters kept in the same transaction
    (activity, files touched, armoire activity).
    Before issue 10 D15: 20 (the armoire read apart, the storage counters upserted twice with
    a read of the file between). Before the small-file work: 16 without the key lock, the
    trial quota or the dashboards (a separate quota read, a max(number) query for a new file,
    two reloads after the commit)."""
    armoire_id = armoire.id
    with StatementLog(db.engine) as log:
        assert upload(contributor_client, armoire_id, "budget.txt", b"x" * 4096, token=warm).status_code == 201
    # SQLite: no master-key lock statement either, the IMMEDIATE transaction holds the write lock.
    budget = 15 if db.engine.dialect.name == "sqlite" else 17
    assert len(log.queries()) <= budget, "\n".join(log.queries())
    version = db.session.execute(db.select(FileVersion).order_by(FileVersion.id.desc()).limit(1)).scalar_one()
    assert version.number == 1


def test_the_quota_reads_the_storage_counters_not_every_version(contributor_client, contributor, armoire, warm):
    """An upload's usage check sums the organisation's per-armoire counters (kept in the same
    transactions as the files), so it does not grow with the archive; it still counts the
    trash and stops counting a purged file, as the live sum does. Before: a sum over every
    version of the organisation, twice per upload (T0 and T1)."""
    from portal.dashboard import storage
    from portal.documents.services import quota

    armoire_id, org_id = armoire.id, contributor.organization_id
    before = quota.used_bytes(org_id)
    for number in range(3):
        assert upload(contributor_client, armoire_id, f"n{number}.txt", b"y" * 1000, token=warm).status_code == 201
    with StatementLog(db.engine) as log:
        assert upload(contributor_client, armoire_id, "compte.txt", b"x" * 4096, token=warm).status_code == 201
    assert not [query for query in log.queries() if "sum(" in query.lower() and "versions_fichiers" in query]
    live = sum(size for _files, _versions, size in storage.recount(org_id).values())
    assert quota.used_bytes(org_id) == live == before + 3 * 1000 + 4096


def test_the_redirect_after_a_form_upload_needs_no_reload(contributor_client, armoire, warm):
    armoire_id = armoire.id
    with StatementLog(db.engine) as log:
        response = upload(contributor_client, armoire_id, "sans-js.txt", b"abc", token=warm, header=False)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/armoires/{armoire_id}")
    assert log.after_last_commit() == []


def test_on_sqlite_an_upload_reads_and_encrypts_outside_the_write_lock(contributor_client, armoire, warm, storage_dir):
    """T0 only reads, so on SQLite it begins DEFERRED: an upload is received, encrypted and
    made durable while another writer holds the write lock, and only its rows (T1) wait.
    Before, every transaction of a POST began IMMEDIATE and the whole upload queued."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    armoire_id = armoire.id
    db.session.commit()
    before = len(blob_files(storage_dir))
    holder = db.engine.raw_connection()
    outcome: dict[str, object] = {}
    try:
        holder.execute("BEGIN IMMEDIATE")

        def send() -> None:
            outcome["response"] = upload(contributor_client, armoire_id, "pendant.txt", b"verrou tenu", token=warm)

        thread = threading.Thread(target=send)
        thread.start()
        deadline = time.monotonic() + 10
        while len(blob_files(storage_dir)) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        sealed_under_lock = len(blob_files(storage_dir)) > before
        assert "response" not in outcome  # its rows wait for the lock
    finally:
        holder.rollback()
        holder.close()
    thread.join(timeout=30)
    assert sealed_under_lock
    assert outcome["response"].status_code == 201
    db.session.commit()
    assert db.session.execute(db.select(File).where(File.name == "pendant.txt")).scalar_one()
    assert db.session.execute(db.select(AuditEntry).where(AuditEntry.target_label == "pendant.txt")).scalar_one()


def test_on_sqlite_only_the_transaction_that_writes_takes_the_write_lock(contributor_client, armoire, warm):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN modes")
    armoire_id = armoire.id
    with StatementLog(db.engine) as log:
        assert upload(contributor_client, armoire_id, "modes.txt", b"abc", token=warm).status_code == 201
    begins = [e for e in log.entries if e.startswith("BEGIN")]
    assert begins == ["BEGIN", "BEGIN IMMEDIATE"], log.entries


def test_other_posts_still_begin_immediate(contributor_client, armoire):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN modes")
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    url = f"/armoires/{armoire.id}/dossiers"
    with StatementLog(db.engine) as log:
        response = contributor_client.post(url, data={"csrf_token": token, "name": "Factures"})
    assert response.status_code in (200, 201, 303), response.text[:300]
    begins = [e for e in log.entries if e.startswith("BEGIN")]
    assert begins and all(b == "BEGIN IMMEDIATE" for b in begins), log.entries
