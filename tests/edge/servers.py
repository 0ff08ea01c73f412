"""The portal behind a real HTTP server on loopback: Werkzeug's threaded server or gunicorn.

Body framing (Content-Length, chunked) is decided by the server, not by the test client,
so the tests that care about it go through one of these.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "COFFRE_TEST_GUNICORN_APP"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WerkzeugServer:
    def __init__(self, app: Flask) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


class GunicornServer:
    """``gunicorn`` (a sync worker) serving ``build_app()`` below."""

    def __init__(self, database_url: str, instance: Path, overrides: dict, *, production: bool = False) -> None:
        """``production``: the worker model of gunicorn.conf.py (gthread, keep-alive) instead."""
        self.port = free_port()
        # Explicitly sync, one request per connection as most of these tests' sockets expect:
        # gunicorn.conf.py (read from ROOT) would make it gthread with keep-alive.
        worker = ["-w", "1"] if production else ["-w", "1", "-k", "sync", "--threads", "1"]
        env = dict(os.environ)
        env[APP_SPEC] = json.dumps({"database_url": database_url, "instance": str(instance), "overrides": overrides})
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *worker,
                "--timeout",
                "120",
                "-b",
                f"127.0.0.1:{self.port}",
                "tests.edge.servers:build_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("gunicorn did not start: " + self._process.stderr.read().decode()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not listen within 60 s")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stderr.close()


def build_app() -> Flask:
    """The gunicorn worker's app: the tests' configuration, read from the environment."""
    from tests.conftest import make_test_app

    spec = json.loads(os.environ[APP_SPEC])
    return make_test_app(spec["database_url"], Path(spec["instance"]), **spec["overrides"])


def send(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    chunked: bool = True,
    chunk_size: int = 64 * 1024,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; ``chunked`` sends the body with no Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = dict(headers or {})
        payload: bytes | Iterable[bytes] | None = body
        if body is not None and chunked:
            payload = (body[i : i + chunk_size] for i in range(0, len(body), chunk_size))
        connection.request(method, path, body=payload, headers=headers, encode_chunked=chunked and body is not None)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()
