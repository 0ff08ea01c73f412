"""The desktop uploader against a live portal on 127.0.0.1, plus misbehaving loopback servers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import portal.api.models  # noqa: F401  # create_all must see jetons_api

ROOT = Path(__file__).resolve().parents[2]


class LivePortal:
    def __init__(self, app) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    """The uploader's token file lives in the test's own directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture
def armoire(app, org):
    from portal.documents.models import Armoire
    from portal.extensions import db

    row = Armoire(organization_id=org.id, name="Archives")
    db.session.add(row)
    db.session.commit()
    return row


@pytest.fixture
def live_portal(app_factory) -> Iterator[LivePortal]:
    server = LivePortal(app_factory(SERVER_NAME=None))
    yield server
    server.stop()


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def loopback() -> Iterator[Callable[[type[http.server.BaseHTTPRequestHandler]], str]]:
    """Start a plain HTTP server on 127.0.0.1 with the given handler; returns its URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(handler: type[http.server.BaseHTTPRequestHandler]) -> str:
        server, url = _serve(handler)
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
