"""S3 slow: an upload through a real gunicorn still streams, its worker's memory stays flat.

A loopback proxy holds the link to moto at a few MiB/s, so the request body arrives much
faster than the parts can leave: a writer that buffered instead of waiting for a part to
land would grow by the file's size. The bound is the writer's own: IN_FLIGHT + 1 part
buffers over the worker's resident size once warmed up, plus a fixed slack.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import threading
from pathlib import Path
from urllib.parse import urlsplit

import requests

from portal.storage.s3 import IN_FLIGHT, MIB, MIN_PART
from tests.edge.servers import GunicornServer
from tests.storage.proxy import CuttableProxy

BOUNDARY = "coffre-slow-boundary"
TOTAL = 128 * MIB  # a writer that buffered would grow by this much, well over the bound
# Bytes per second towards the store, shared by the parts in flight: each part's connection
# gets about 1 MiB/s, slower than what the part sends used to be allowed (5 s for 8 MiB).
RATE = 4 * MIB
# Over the writer's buffers: the encryption pipeline's few 1 MiB chunks, the request
# parser's, and the allocator's per-thread arenas of a dozen threads.
SLACK = 32 * MIB


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _chunks(seed: int, total: int):
    generator = random.Random(seed)
    sent = 0
    while sent < total:
        size = min(MIB, total - sent)
        yield generator.randbytes(size)
        sent += size


def _upload(port: int, secret: str, armoire_id: int, seed: int, total: int) -> tuple[int, bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="armoire_id"\r\n\r\n{armoire_id}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="lent-{seed}.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.putrequest("POST", "/api/v1/fichiers")
        connection.putheader("Authorization", f"Bearer {secret}")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        connection.putheader("Content-Length", str(len(head) + total + len(tail)))
        connection.endheaders()
        try:
            connection.send(head)
            for chunk in _chunks(seed, total):
                connection.send(chunk)
            connection.send(tail)
        except BrokenPipeError:
            pass  # the server answered early: its answer says why
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_upload_to_a_slow_store_streams_with_flat_memory(
    app, bucket, s3_endpoint, database_url, tmp_path, contributor, make_token, make_armoire, org
):
    s3, name = bucket
    endpoint = urlsplit(s3_endpoint)
    proxy = CuttableProxy(endpoint.hostname, endpoint.port, upload_bytes_per_second=RATE)
    overrides = {
        "SERVER_NAME": None,
        "COFFRE_STORAGE": "s3",
        "COFFRE_S3_BUCKET": name,
        "COFFRE_S3_ENDPOINT_URL": proxy.url,
        "COFFRE_S3_PREFIX": "blobs/",
    }
    app.config.update({k: v for k, v in overrides.items() if k != "SERVER_NAME"})
    armoire = make_armoire(org)
    secret = make_token(contributor)
    server = GunicornServer(database_url, tmp_path / "instance", overrides)
    try:
        worker = _worker_pid(server._process.pid)
        # Warm up: the first upload imports and connects; memory after it is the baseline.
        status, body = _upload(server.port, secret, armoire.id, 1, 2 * MIB)
        assert status == 201, body[:500]
        baseline = _rss(worker)

        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss(worker))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            status, body = _upload(server.port, secret, armoire.id, 2, TOTAL)
        finally:
            done.set()
            sampler.join(timeout=5)
        assert status == 201, body[:500]
        print(f"worker RSS {baseline / MIB:.0f} MiB warm, +{(peak[0] - baseline) / MIB:.0f} MiB at the peak")
        file_id = json.loads(body)["file_id"]

        bound = (IN_FLIGHT + 1) * MIN_PART + SLACK
        print(f"GROWTH {(peak[0] - baseline) / MIB:.1f} MiB baseline {baseline / MIB:.0f} MiB")
        assert peak[0] - baseline < bound, (
            f"worker grew by {(peak[0] - baseline) / MIB:.0f} MiB (bound {bound / MIB:.0f} MiB)"
        )

        expected = hashlib.sha256()
        for chunk in _chunks(2, TOTAL):
            expected.update(chunk)
        got = hashlib.sha256()
        size = 0
        with requests.get(
            f"http://127.0.0.1:{server.port}/api/v1/fichiers/{file_id}/contenu",
            headers={"Authorization": f"Bearer {secret}"},
            stream=True,
            timeout=300,
        ) as download:
            assert download.status_code == 200
            for chunk in download.iter_content(MIB):
                got.update(chunk)
                size += len(chunk)
        assert size == TOTAL and got.hexdigest() == expected.hexdigest()
        assert not s3.list_multipart_uploads(Bucket=name).get("Uploads")
    finally:
        server.stop()
        proxy.cut()
