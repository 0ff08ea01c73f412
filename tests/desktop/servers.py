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
    """A real forwarding proxy that rewrites the portal's JSON receipt (GET /api/v1/uploads/<id>)."""

    class Proxy(_Quiet):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = drain_chunked(self) if self.command in ("POST", "PATCH") else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "transfer-encoding"}}
            upstream = httpx.request(self.command, target + self.path, content=body, headers=headers, timeout=30)
            payload = upstream.content
            if self.command == "GET" and self.path.startswith("/api/v1/uploads/") and upstream.status_code == 200:
                payload = json.dumps(alter(upstream.json())).encode()
            self.send_response(upstream.status_code)
            for name, value in upstream.headers.items():
                if name.lower() not in {"content-length", "transfer-encoding", "connection", "date", "server"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload) if self.command != "HEAD" else 0))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_HEAD = do_DELETE = _forward  # noqa: N815

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


def cutting_proxy(
    target: str, cut: Callable[[int, int], bool], seen: list[int]
) -> type[http.server.BaseHTTPRequestHandler]:
    """Forwards to the portal, recording each PATCH's Upload-Offset; when ``cut(n, offset)`` is
    true for the n-th PATCH, its connection is dropped without an answer (the part never
    reaches the portal), as a mobile network does."""

    class Proxy(_Quiet):
        protocol_version = "HTTP/1.1"
        patches = 0

        def _forward(self) -> None:
            body = drain_chunked(self) if self.command in ("POST", "PATCH") else b""
            if self.command == "PATCH":
                type(self).patches += 1
                offset = int(self.headers["Upload-Offset"])
                seen.append(offset)
                if cut(type(self).patches, offset):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "transfer-encoding"}}
            upstream = httpx.request(self.command, target + self.path, content=body, headers=headers, timeout=30)
            self.send_response(upstream.status_code)
            for name, value in upstream.headers.items():
                if name.lower() not in {"content-length", "transfer-encoding", "connection", "date", "server"}:
                    self.send_header(name, value)
            payload = upstream.content
            self.send_header("Content-Length", str(len(payload) if self.command != "HEAD" else 0))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_HEAD = do_DELETE = _forward  # noqa: N815

    return Proxy
