"""/healthz (alive) and /readyz (dependencies), and the JSON log format."""

from __future__ import annotations

import json
import logging
import socket

from portal.logformat import JsonFormatter


def test_healthz_and_readyz_when_everything_answers(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "blob_store": "ok", "key_provider": "ok"},
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_readyz_names_what_is_down_without_secrets(app, client):
    port = _closed_port()
    app.config.update(
        COFFRE_STORAGE="s3",
        COFFRE_S3_BUCKET="bucket-secret-name",
        COFFRE_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        RATELIMIT_STORAGE_URI=f"redis://:hunter2@127.0.0.1:{port}/3",
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["checks"] == {"database": "ok", "blob_store": "down", "key_provider": "ok", "redis": "down"}
    assert body["detail"] == "down: blob_store, redis"
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "bucket-secret-name" not in text and str(port) not in text


def test_readyz_with_redis_up(app, client):
    app.config["RATELIMIT_STORAGE_URI"] = "redis://127.0.0.1:6379/9"
    assert client.get("/readyz").get_json()["checks"]["redis"] == "ok"


def test_json_log_lines():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("portal.x", logging.ERROR, __file__, 1, "échec %s", ("ici",), sys.exc_info())
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "portal.x" and entry["message"] == "échec ici"
    assert "ValueError: boom" in entry["exception"] and "\n" not in line
