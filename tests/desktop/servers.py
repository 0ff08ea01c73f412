"""Loopback HTTP servers that misbehave on purpose, for the uploader tests."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable

import httpx


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def drain_chunked(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """Read a request body sent with chunked transfer encoding (as the uploader does)."""
    if handler.headers.get("Content-Length"):
        return handler.rfile.read(int(handler.headers["Content-Length"]))
    body = bytearray()
    while True:
        size = int(handler.rfile.readline().strip().split(b";")[0], 16)
        if size == 0:
            handler.rfile.readline()
            return bytes(body)
        body.extend(handler.rfile.read(size))
        handler.rfile.readline()


def tampering_proxy(target: str, alter: Callable[[dict], dict]) -> type[http.server.BaseHTTPRequestHandler]:
    """A real forwarding proxy that rewrites the portal's JSON receipt."""

    class Proxy(_Quiet):
        def do_POST(self) -> None:
            body = drain_chunked(self)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "transfer-encoding"}}
            upstream = httpx.post(target + self.path, content=body, headers=headers, timeout=30)
            payload = json.dumps(alter(upstream.json())).encode()
            self.send_response(upstream.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Proxy


class ServerError(_Quiet):
    def do_POST(self) -> None:
        drain_chunked(self)
        payload = b'{"type": "/problems/internal", "status": 500, "title": "x", "detail": "boom"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class NeverAnswers(_Quiet):
    release = threading.Event()

    def do_POST(self) -> None:
        drain_chunked(self)
        self.release.wait(10)
