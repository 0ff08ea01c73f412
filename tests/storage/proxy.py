"""A loopback TCP relay in front of moto that a test can cut (S3 unreachable mid-request) and
restore, or slow down (a store behind a thin link)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int, upload_bytes_per_second: int | None = None) -> None:
        """``upload_bytes_per_second``: the bandwidth towards the store, shared by every
        connection (answers come back unthrottled)."""
        self.target = (target_host, target_port)
        self._rate = upload_bytes_per_second
        self._next_slot = 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_event = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.cut_event.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_event.is_set():
                client.close()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                if self.cut_event.is_set():
                    # Cut while this connection was being relayed: cut() has closed the
                    # others already and will not see this pair.
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _throttle(self, size: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._next_slot = max(self._next_slot, now) + size / self._rate
            delay = self._next_slot - now - size / self._rate
        if delay > 0:
            time.sleep(delay)

    def _pump(self, source: socket.socket, sink: socket.socket, towards_store: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if towards_store and self._rate:
                    self._throttle(len(data))
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def restore(self) -> None:
        """The store is back, on the same address."""
        with self._lock:
            for sock in self._sockets:
                sock.close()  # closed by cut() already; closing again is a no-op
            self._sockets = []
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.cut_event.clear()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones (the store is gone)."""
        self.cut_event.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
