"""Rate limits in Redis: counters land in the shared store; Redis down fails closed for
sign-in and open for reads."""

from __future__ import annotations

import socket

import redis

from tests.conftest import csrf

REDIS = "redis://127.0.0.1:6379/12"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _login(client, email="personne@example.test"):
    return client.post(
        "/auth/login",
        data={"email": email, "password": "mauvais mot de passe", "csrf_token": csrf(client, "/auth/login")},
    )


def test_login_limit_is_counted_in_redis(app_factory):
    # Flask-Limiter keeps the first app's key prefix for the whole process (the tests build
    # many apps), so the counters are found as the keys this test added to its Redis DB.
    app = app_factory(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=REDIS)
    store = redis.Redis.from_url(REDIS)
    before = set(store.keys("*"))
    try:
        with app.app_context():
            client = app.test_client()
            statuses = [_login(client).status_code for _ in range(11)]
        assert 429 in statuses
        added = set(store.keys("*")) - before
        assert any(b"login" in key for key in added), added  # in Redis, where every instance sees them
    finally:
        for key in set(store.keys("*")) - before:
            store.delete(key)
        store.close()


def test_redis_down_fails_closed_for_login_and_open_for_reads(app_factory):
    down = f"redis://127.0.0.1:{_closed_port()}/0"
    app = app_factory(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=down)
    with app.app_context():
        client = app.test_client()
        assert client.get("/auth/login").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/healthz").status_code == 200
        refused = _login(client)
        assert refused.status_code == 503
        assert client.get("/readyz").get_json()["checks"]["redis"] == "down"
