"""A GET's bookkeeping write (a token's or a session's last-use touch) never fails the GET
because another request holds SQLite's write lock: it waits a little, or is skipped."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from portal.api.models import ApiToken
from portal.auth import clock
from portal.auth.models import UserSession
from portal.extensions import db
from tests.api.conftest import bearer
from tests.conftest import database_backend

pytestmark = pytest.mark.skipif(
    database_backend() != "sqlite", reason="SQLite's single write lock; PostgreSQL locks rows, not the database"
)


class WriteLockHolder(threading.Thread):
    """Another connection holding SQLite's write lock for ``seconds`` (as an upload's commit does)."""

    def __init__(self, app, seconds: float) -> None:
        super().__init__(daemon=True)
        self.path = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
        self.seconds = seconds
        self.holding = threading.Event()

    def run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN IMMEDIATE")
            self.holding.set()
            time.sleep(self.seconds)
            connection.execute("COMMIT")
        finally:
            connection.close()

    def __enter__(self) -> WriteLockHolder:
        self.start()
        assert self.holding.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.join(timeout=30)


def _age_token() -> None:
    db.session.execute(update(ApiToken).values(last_used_at=clock.now() - timedelta(minutes=5)))
    db.session.commit()


def _token_last_used():
    db.session.rollback()
    return db.session.scalar(select(ApiToken.last_used_at))


@pytest.fixture
def api_listing(app, contributor, make_token, make_armoire, org):
    secret = make_token(contributor)
    armoire = make_armoire(org)
    _age_token()
    return f"/api/v1/armoires/{armoire.id}/fichiers", bearer(secret)


def test_token_touch_waits_for_a_short_write_lock(app, client, api_listing):
    url, headers = api_listing
    before = _token_last_used()
    with WriteLockHolder(app, 0.5):
        response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_data()[:300]
    assert _token_last_used() > before


def test_token_touch_is_skipped_when_the_lock_stays_taken(app, client, api_listing):
    url, headers = api_listing
    before = _token_last_used()
    with WriteLockHolder(app, 6):
        started = time.monotonic()
        response = client.get(url, headers=headers)
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.get_data()[:300]
    assert elapsed < 5  # the touch gave up; it did not hold the request for busy_timeout
    assert _token_last_used() == before


def _age_sessions() -> None:
    db.session.execute(update(UserSession).values(last_seen_at=clock.now() - timedelta(minutes=5)))
    db.session.commit()


def _session_last_seen():
    db.session.rollback()
    return db.session.scalar(select(UserSession.last_seen_at))


def test_session_touch_is_skipped_when_the_lock_stays_taken(app, contributor_client):
    _age_sessions()
    before = _session_last_seen()
    with WriteLockHolder(app, 6):
        started = time.monotonic()
        response = contributor_client.get("/armoires")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 5
    assert _session_last_seen() == before


def test_session_touch_waits_for_a_short_write_lock(app, contributor_client):
    _age_sessions()
    before = _session_last_seen()
    with WriteLockHolder(app, 0.5):
        response = contributor_client.get("/armoires")
    assert response.status_code == 200
    assert _session_last_seen() > before
