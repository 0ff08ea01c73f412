"""gunicorn, as configured for production, keeps an idle connection longer than clients keep
theirs, so that the client closes first (issue 18: with gunicorn's default 2 s keep-alive, a
request sent as the worker dropped its idle connection was cut, ReadError/RemoteProtocolError)."""

from __future__ import annotations

import socket
import time

import httpx

from tests.edge.servers import GunicornServer


def _get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection instead of answering"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _closed_by_peer(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout, recv would wait for data instead of answering now
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # nothing to read, still open
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(timeout)


def test_idle_connection_outlives_the_clients_pool_timeout(database_url, tmp_path, app_factory):
    app_factory()  # the schema, emptied after the test
    server = GunicornServer(database_url, tmp_path / "instance", {"SERVER_NAME": None}, production=True)
    try:
        idle = httpx.Limits().keepalive_expiry + 1  # 6 s: httpx drops its idle connections after 5
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            assert _get(sock).startswith(b"HTTP/1.1 200")
            time.sleep(idle)
            assert not _closed_by_peer(sock)
            assert _get(sock).startswith(b"HTTP/1.1 200")  # the same connection serves again
    finally:
        server.stop()
