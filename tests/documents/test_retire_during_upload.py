"""A master key version retired while an upload streams never leaves an acknowledged file
unreadable: the upload's last transaction wraps its data key under the live primary, and
`keys retire` serialises with that transaction (issue 10, B4)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from portal.api import services as token_services
from portal.audit.context import Actor
from portal.crypto import envelope
from portal.crypto.errors import KeyConfigError
from portal.crypto.models import DataKey
from portal.database import write_transaction
from portal.documents.models import Armoire, File, FileVersion
from portal.documents.services import reading, uploads
from portal.extensions import db
from tests.browser.conftest import LiveServer
from tests.conftest import ROOT
from tests.documents.conftest import BOUNDARY


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def keys_cli(app, *args: str) -> subprocess.CompletedProcess:
    """`flask --app wsgi keys ...` in its own process, on the test's database and keyring."""
    instance = Path(app.config["COFFRE_MASTER_KEY_FILE"]).parent
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "COFFRE_INSTANCE_DIR": str(instance),
        "COFFRE_MASTER_KEY_FILE": app.config["COFFRE_MASTER_KEY_FILE"],
        "COFFRE_STORAGE_DIR": app.config["COFFRE_STORAGE_DIR"],
        "COFFRE_SCHEDULER": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "keys", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_retired_in_another_process_while_an_api_upload_streams(app, contributor, storage_dir):
    """The desktop uploader's case: rotate + retire run in a CLI process while the body is
    half sent; the 201 receipt says delete_local, so the file must open afterwards."""
    armoire = Armoire(organization_id=contributor.organization_id, name="Comptabilité")
    db.session.add(armoire)
    db.session.commit()
    _token, secret = token_services.create_token(
        contributor, Actor(contributor.organization_id, contributor.id), name="bureau", days=1
    )
    # A file stored before the rotation: `keys rotate` must move it, or retire refuses.
    earlier = uploads.store_upload(
        Actor(contributor.organization_id, contributor.id), armoire, None, "avant.txt", [b"avant"], 5
    )
    db.session.commit()
    earlier_file_id = earlier.file_id

    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="armoire_id"\r\n\r\n{armoire.id}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="delete_after_upload"\r\n\r\ntrue\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="pendant.bin"\r\n\r\n'
    ).encode()
    first_half, second_half = os.urandom(3 << 20), os.urandom(1 << 20)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    length = len(head) + len(first_half) + len(second_half) + len(tail)

    server = LiveServer(app).start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        connection = socket.create_connection(("127.0.0.1", port), timeout=60)
        try:
            connection.sendall(
                (
                    "POST /api/v1/fichiers HTTP/1.1\r\nHost: localhost\r\n"
                    f"Authorization: Bearer {secret}\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                    f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
                ).encode()
                + head
                + first_half
            )
            # The data key is made and the body is streaming into the pending blob.
            temp = storage_dir / "tmp"
            wait_for(lambda: temp.is_dir() and any(temp.iterdir()))
            db.session.commit()

            rotated = keys_cli(app, "rotate")
            assert rotated.returncode == 0, rotated.stderr
            retired = keys_cli(app, "retire", "1")
            assert retired.returncode == 0, retired.stderr

            connection.sendall(second_half + tail)
            response = b""
            while chunk := connection.recv(65536):
                response += chunk
        finally:
            connection.close()
    finally:
        server.stop()

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 201"), response[:600]
    receipt = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert receipt["delete_local"] is True

    db.session.expire_all()
    keyring = json.loads(Path(app.config["COFFRE_MASTER_KEY_FILE"]).read_text())
    assert keyring["primary"] == 2 and keyring["retired"] == [1] and "1" not in keyring["keys"]
    version = db.session.execute(select_version(receipt["file_id"])).scalar_one()
    assert version.data_key.master_key_id == "local:2"

    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    download = client.get(f"/api/v1/fichiers/{receipt['file_id']}/contenu", headers=headers)
    assert download.status_code == 200, download.get_data(as_text=True)[:300]
    assert download.data == first_half + second_half
    assert client.get(f"/api/v1/fichiers/{earlier_file_id}/contenu", headers=headers).data == b"avant"


def select_version(file_id: int):
    return db.select(FileVersion).where(FileVersion.file_id == file_id)


def test_retire_waits_for_an_upload_transaction_under_that_version(app, contributor):
    """T1 has inserted its key row under version 1 and not committed yet: a retire of
    version 1 must wait for it, then see the row and refuse, never erase the key under it."""
    armoire = Armoire(organization_id=contributor.organization_id, name="Comptabilité")
    db.session.add(armoire)
    db.session.commit()
    armoire_id = armoire.id
    actor = Actor(contributor.organization_id, contributor.id)
    flushed, committed_at = threading.Event(), []
    retire_started = threading.Event()
    outcome: list[object] = []
    errors: list[BaseException] = []

    def upload() -> None:
        with app.app_context(), app.test_request_context(method="POST"), write_transaction():
            try:
                target = db.session.get(Armoire, armoire_id)
                plan = uploads.prepare_upload(actor, target, None, "t1.txt", None)
                sealed = uploads.seal_upload(plan, [b"contenu acquitte"])
                version = uploads.finish_upload(sealed)
                assert version.data_key.master_key_id == "local:1"
                flushed.set()
                retire_started.wait(20)
                time.sleep(0.5)  # the retire is now waiting on this transaction, if it waits at all
                db.session.commit()
                committed_at.append(time.monotonic())
            except BaseException as error:  # reported by the main thread
                errors.append(error)
                db.session.rollback()
                flushed.set()

    def retire() -> None:
        # As the CLI does: no write intent declared, so on SQLite nothing else would make it wait.
        with app.app_context():
            flushed.wait(20)
            try:
                envelope.rotate_master_key()
                retire_started.set()
                envelope.retire_master_key(1)
                db.session.commit()
                outcome.append(("retired", time.monotonic()))
            except KeyConfigError as error:
                db.session.rollback()
                outcome.append((str(error), time.monotonic()))

    threads = [threading.Thread(target=upload), threading.Thread(target=retire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    ((message, finished_at),) = outcome
    assert "still wraps 1 data keys" in message
    assert finished_at >= committed_at[0]

    db.session.rollback()  # a fresh snapshot (SQLite's is taken at the first read)
    file = db.session.execute(db.select(File).where(File.name == "t1.txt")).scalar_one()
    version = db.session.get(FileVersion, file.current_version_id)
    key = db.session.get(DataKey, version.data_key_id)
    assert envelope.open_data_key(key, key.context)
    assert envelope.get_key_provider().versions()["active"] == [1, 2]


def test_an_upload_sealed_before_a_retire_is_rewrapped_at_the_end(app, contributor):
    """Same process: the key was made under version 1, rotate + retire ran meanwhile; the
    last transaction wraps the in-memory data key under the new primary."""
    armoire = Armoire(organization_id=contributor.organization_id, name="Comptabilité")
    db.session.add(armoire)
    db.session.commit()
    actor = Actor(contributor.organization_id, contributor.id)
    plan = uploads.prepare_upload(actor, armoire, None, "scelle.txt", None)
    sealed = uploads.seal_upload(plan, [b"scelle sous la version 1"])
    assert sealed.data_key.master_key_id == "local:1"
    envelope.rotate_master_key()
    envelope.retire_master_key(1)
    db.session.commit()
    with app.test_request_context(method="POST"):
        version = uploads.finish_upload(sealed)
    db.session.commit()
    db.session.expire_all()
    key = db.session.get(DataKey, version.data_key_id)
    assert key.master_key_id == "local:2"
    file = db.session.get(File, version.file_id)
    _version, stream = reading.open_version_stream(actor, file, None, record_access=False)
    assert b"".join(stream) == b"scelle sous la version 1"


@pytest.fixture(autouse=True)
def _no_stray_transaction(app):
    yield
    db.session.rollback()
