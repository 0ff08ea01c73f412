"""A 50 MiB tus upload to a real server, its connection cut at 20 random points."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import threading
import time

import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from portal.documents.models import FileVersion
from portal.extensions import db

MIB = 1 << 20


@pytest.fixture
def server(app_factory):
    server = make_server("127.0.0.1", 0, app_factory(SERVER_NAME=None), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(timeout=5)


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def cut_patch(port: int, path: str, secret: str, offset: int, body: bytes, send: int) -> None:
    """Send a PATCH announcing all of ``body`` but only ``send`` bytes of it, then drop the connection."""
    connection = socket.create_connection(("127.0.0.1", port))
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    connection.sendall(head)
    connection.sendall(body[:send])
    connection.close()


def test_twenty_cuts_during_a_50_mib_upload(server, contributor, make_token, make_armoire, org):
    secret = make_token(contributor)
    armoire = make_armoire(org)
    content = os.urandom(50 * MIB)
    rng = random.Random(16)
    base = f"http://127.0.0.1:{server}"
    auth = {"Authorization": f"Bearer {secret}", "Tus-Resumable": "1.0.0"}
    created = httpx.post(
        base + "/api/v1/uploads/",
        headers=auth
        | {
            "Upload-Length": str(len(content)),
            "Upload-Metadata": f"filename {b64('archive.bin')},armoire_id {b64(str(armoire.id))}",
        },
    )
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["Location"]).path
    cuts = sorted(rng.sample(range(1, len(content)), 20))
    offsets_seen: list[int] = []
    done = None
    with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
        while done is None:
            head = client.head(path)
            assert head.status_code == 200
            offset = int(head.headers["Upload-Offset"])
            offsets_seen.append(offset)
            pending = [cut for cut in cuts if cut > offset]
            if pending:
                cut = pending[0]
                cuts.remove(cut)
                cut_patch(server, path, secret, offset, content[offset:], cut - offset)
                continue
            response = client.patch(
                path,
                content=content[offset:],
                headers={"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
            )
            if response.status_code in (409, 423):
                # The server has not finished with the cut request yet: ask again.
                time.sleep(0.05)
                continue
            assert response.status_code == 204, response.text
            done = response
    assert not cuts
    # Sealed segments survived the cuts: the offset only ever moved forward, and it did move.
    assert offsets_seen == sorted(offsets_seen) and len(set(offsets_seen)) > 10
    file_id = int(done.headers["Coffre-File-Id"])
    assert done.headers["Coffre-Version"] == "1"
    download = httpx.get(f"{base}/api/v1/fichiers/{file_id}/contenu", headers=auth, timeout=60)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(content).digest()
    assert download.content == content
    db.session.rollback()
    versions = db.session.execute(select(FileVersion)).scalars().all()
    assert len(versions) == 1 and versions[0].sha256 == hashlib.sha256(content).hexdigest()
    receipt = httpx.get(base + path.replace("/uploads/", "/uploads/"), headers=auth).json()
    assert receipt["complete"] is True and receipt["file_id"] == file_id
