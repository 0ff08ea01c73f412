"""Uploads never hold a transaction while the body arrives; quota and numbering under races;
a full disk is a clean 507; the crypto pipeline leaves no thread behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.database import utcnow
from portal.documents.errors import QuotaExceeded
from portal.documents.models import File, FileVersion
from portal.documents.services import quota, uploads
from portal.extensions import db
from portal.organizations.models import Organization
from tests.browser.conftest import LiveServer
from tests.conftest import csrf
from tests.documents.conftest import BOUNDARY, blob_files, last_file, multipart, post_multipart, upload


def crypto_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("coffre-encrypt", "coffre-decrypt")]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def live(app):
    server = LiveServer(app).start()
    yield server
    server.stop()


def test_slow_upload_does_not_block_a_concurrent_write(app, live, contributor_client, armoire, storage_dir):
    """A client pausing in the middle of its body holds no database lock: another upload
    (a write: rows, journal, commit) completes while the first one is still waiting."""
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    cookie = contributor_client.get_cookie(cookie_name).value
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="lent.bin"\r\n\r\n'
    ).encode()
    first_half, second_half = os.urandom(3 << 20), os.urandom(1 << 20)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    length = len(head) + len(first_half) + len(second_half) + len(tail)
    port = int(live.url.rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        slow.sendall(
            (
                f"POST /armoires/{armoire.id}/televerser HTTP/1.1\r\nHost: localhost\r\n"
                f"Cookie: {cookie_name}={cookie}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
            ).encode()
            + head
            + first_half
        )
        # The server is streaming the first body into its pending blob, and waits for more.
        temp = storage_dir / "tmp"
        wait_for(lambda: temp.is_dir() and any(temp.iterdir()))

        started = time.monotonic()
        body = multipart([("csrf_token", token)], [("file", "rapide.txt", b"pendant ce temps")])
        quick = httpx.post(
            f"{live.url}/armoires/{armoire.id}/televerser",
            content=body,
            headers={
                "Host": "localhost",
                "Cookie": f"{cookie_name}={cookie}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
            timeout=20,
        )
        assert quick.status_code == 303, quick.text[:500]
        assert time.monotonic() - started < 5
        db.session.commit()
        assert [f.name for f in db.session.execute(db.select(File)).scalars()] == ["rapide.txt"]

        slow.sendall(second_half + tail)
        response = b""
        while chunk := slow.recv(65536):
            response += chunk
    finally:
        slow.close()
    assert response.startswith(b"HTTP/1.1 303"), response[:300]
    db.session.commit()
    stored = db.session.execute(db.select(File).where(File.name == "lent.bin")).scalar_one()
    assert stored.size == len(first_half) + len(second_half)
    assert contributor_client.get(f"/fichiers/{stored.id}/telecharger").data == first_half + second_half


def _blocking_chunks(barrier: threading.Barrier, content: bytes):
    # Both uploads have passed their pre-check (T0) before either reaches T1.
    barrier.wait(timeout=20)
    yield content


@pytest.mark.parametrize("quota_from", ["plan", "trial"])
def test_racing_uploads_cannot_exceed_the_quota_together(
    app, contributor, armoire, storage_dir, quota_from, monkeypatch
):
    """Whether the quota is a paid plan's (the organisation's column) or the trial's (the
    column NULL, the setting applies), T1 re-checks it under the organisation lock."""
    from portal.database import write_transaction

    org = db.session.get(Organization, contributor.organization_id)
    if quota_from == "plan":
        org.storage_quota_bytes, size = 1500, 1000
    else:
        org.storage_quota_bytes, size = None, 600 * 1024
        monkeypatch.setitem(app.config, "COFFRE_TRIAL_STORAGE_MB", 1)
    db.session.commit()
    armoire_id = armoire.id
    actor = Actor(contributor.organization_id, contributor.id)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def send(i: int) -> None:
        # A request context for the error's translated message; GET, so only write_transaction
        # makes SQLite begin IMMEDIATE, as a job or thread would need.
        with app.test_request_context(), write_transaction():
            try:
                target = db.session.get(type(armoire), armoire_id)
                chunks = _blocking_chunks(barrier, bytes([65 + i]) * size)
                version = uploads.store_upload(actor, target, None, f"f{i}.bin", chunks, size)
                db.session.commit()
                outcomes.append(version.number)
            except Exception as error:
                db.session.rollback()
                outcomes.append(error)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["QuotaExceeded", "int"], outcomes
    db.session.rollback()
    assert quota.used_bytes(contributor.organization_id) == size
    assert len(db.session.execute(db.select(FileVersion)).all()) == 1
    assert len(blob_files(storage_dir)) == 1  # the refused upload's blob was deleted
    assert not crypto_threads()


def test_upload_commits_nothing_during_the_body_and_rows_appear_at_the_end(contributor, armoire, storage_dir):
    """Between T0 and T1 the service holds no transaction; the rows exist only after T1."""
    actor = Actor(contributor.organization_id, contributor.id)
    seen: list[bool] = []

    def chunks():
        yield b"premier morceau "
        seen.append(db.session().in_transaction())
        yield b"second morceau"

    version = uploads.store_upload(actor, armoire, None, "phases.txt", chunks(), None)
    assert seen == [False]
    assert db.session().in_transaction()  # T1, left for the caller to commit
    db.session.commit()
    assert version.number == 1 and len(version.uid) == 32
    assert version.data_key.context == {"org": str(contributor.organization_id), "version": version.uid}


def test_quota_rechecked_at_the_end_removes_the_blob(app, contributor, armoire, storage_dir):
    org = db.session.get(Organization, contributor.organization_id)
    org.storage_quota_bytes = 100
    db.session.commit()
    actor = Actor(contributor.organization_id, contributor.id)
    plan = uploads.prepare_upload(actor, armoire, None, "x.bin", None)
    sealed = uploads.seal_upload(plan, [b"a" * 60])
    # Meanwhile another upload used most of the quota.
    uploads.store_upload(actor, armoire, None, "autre.bin", [b"b" * 60], None)
    db.session.commit()
    with app.test_request_context(), pytest.raises(QuotaExceeded):
        uploads.finish_upload(sealed)
    db.session.rollback()
    assert [f.name for f in db.session.execute(db.select(File)).scalars()] == ["autre.bin"]
    assert len(blob_files(storage_dir)) == 1


@pytest.mark.parametrize("gone", ["armoire", "folder", "folder_elsewhere", "file_trashed"])
def test_a_target_gone_before_the_rows_is_a_404_that_leaves_nothing(app, contributor, armoire, storage_dir, gone):
    """T1 inserts a new file only if its armoire (and folder) are still there, in the insert
    itself; a new version only if its file is still live. Either way nothing stays behind:
    no row, no journal entry, no blob, storage counters unchanged."""
    from portal.dashboard import storage
    from portal.documents.errors import NotFound
    from portal.documents.services import armoires, folders

    actor = Actor(contributor.organization_id, contributor.id)
    folder = folders.create_folder(actor, armoire, None, "Dossier")
    other = armoires.create_armoire(actor, "Autre")
    existing = uploads.store_upload(actor, armoire, None, "déjà.txt", [b"v1"], None)
    db.session.commit()
    file = db.session.get(File, existing.file_id)
    if gone == "file_trashed":
        plan = uploads.prepare_version(actor, file, "déjà.txt", None)
    else:
        plan = uploads.prepare_upload(actor, armoire, folder if gone != "armoire" else None, "nouveau.txt", None)
    sealed = uploads.seal_upload(plan, [b"contenu"])
    if gone == "armoire":
        plan.armoire_id = other.id + 1000
    elif gone == "folder":
        db.session.execute(db.delete(File.__table__.metadata.tables["dossiers"]).where(db.text(f"id = {folder.id}")))
    elif gone == "folder_elsewhere":
        plan.armoire_id = other.id
    else:
        db.session.refresh(file)  # the counters' event compares with the loaded value
        file.deleted_at = utcnow()
    db.session.commit()
    counters = storage.stored(contributor.organization_id)
    entries = db.session.execute(db.select(db.func.count(AuditEntry.id))).scalar_one()
    with app.test_request_context(), pytest.raises(NotFound):
        uploads.finish_upload(sealed)
    db.session.rollback()
    assert db.session.execute(db.select(db.func.count(FileVersion.id))).scalar_one() == 1
    assert [f.name for f in db.session.execute(db.select(File)).scalars()] == ["déjà.txt"]
    assert db.session.execute(db.select(db.func.count(AuditEntry.id))).scalar_one() == entries
    assert storage.stored(contributor.organization_id) == counters == storage.recount(contributor.organization_id)
    assert len(blob_files(storage_dir)) == 1


def test_upload_rows_keep_the_storage_counters_equal_to_the_files(contributor, armoire):
    """The upload's rows are Core inserts, which the counters' ORM events do not see: the
    upload counts them itself, once per file and per version."""
    from portal.dashboard import storage

    actor = Actor(contributor.organization_id, contributor.id)
    first = uploads.store_upload(actor, armoire, None, "a.txt", [b"un"], None)
    uploads.add_version(actor, db.session.get(File, first.file_id), "a.txt", [b"deux!"], None)
    uploads.store_upload(actor, armoire, None, "b.txt", [b"trois"], None)
    db.session.commit()
    expected = {armoire.id: (2, 3, 2 + 5 + 5)}
    assert storage.stored(contributor.organization_id) == expected == storage.recount(contributor.organization_id)


def test_audit_details_are_merged_into_the_journal(contributor, armoire):
    actor = Actor(contributor.organization_id, contributor.id)
    version = uploads.store_upload(
        actor, armoire, None, "a.txt", [b"un"], 2, audit_details={"delete_after_upload": True}
    )
    file = db.session.get(File, version.file_id)
    uploads.add_version(actor, file, "a.txt", [b"deux"], 4, audit_details={"delete_after_upload": False})
    db.session.commit()
    entries = {
        e.action: e.details
        for e in db.session.execute(db.select(AuditEntry).where(AuditEntry.target_id == file.id)).scalars()
    }
    assert entries["file.added"]["delete_after_upload"] is True
    assert entries["file.added"]["size"] == 2
    assert entries["file.modified"]["delete_after_upload"] is False
    assert entries["file.modified"]["version"] == 2


def test_interrupted_upload_leaves_no_thread_row_or_blob(contributor_client, armoire, storage_dir):
    import io

    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="coupé.bin"\r\n\r\n'
    ).encode() + os.urandom(5 * (1 << 20))
    response = contributor_client.post(
        f"/armoires/{armoire.id}/televerser",
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        headers={"Content-Length": str(len(body) + 5000)},
    )
    assert response.status_code == 400
    assert not crypto_threads()
    assert db.session.execute(db.select(FileVersion)).first() is None
    assert blob_files(storage_dir) == []
    assert list((storage_dir / "tmp").iterdir()) == []


def test_download_client_going_away_leaves_no_thread(contributor_client, armoire):
    content = os.urandom(6 * (1 << 20))
    upload(contributor_client, armoire.id, "gros.bin", content)
    file = last_file()
    response = contributor_client.get(f"/fichiers/{file.id}/telecharger", buffered=False)
    iterator = iter(response.response)
    assert len(next(iterator)) > 0
    response.close()  # the client disconnects after the first chunk
    wait_for(lambda: not crypto_threads(), timeout=5)
    assert contributor_client.get(f"/fichiers/{file.id}/telecharger").data == content


def test_a_large_download_decrypts_ahead_in_a_worker_that_ends_with_the_stream(contributor_client, armoire):
    """Issue 10 D13: reading a segment and AES-GCM release the GIL (cryptography 50), so a
    worker reads and decrypts the next segments while this thread sends the previous one."""
    content = os.urandom(6 * (1 << 20))
    upload(contributor_client, armoire.id, "gros.bin", content)
    file = last_file()
    response = contributor_client.get(f"/fichiers/{file.id}/telecharger", buffered=False)
    received, workers_seen = [], []
    for chunk in response.response:
        received.append(chunk)
        workers_seen.append(any(t.name == "coffre-decrypt" for t in crypto_threads()))
    response.close()
    assert b"".join(received) == content
    assert any(workers_seen)
    assert not crypto_threads()


def test_a_small_download_decrypts_in_the_thread_that_sends_it(contributor_client, armoire):
    """Two segments or fewer: starting and joining a worker would cost more than it overlaps."""
    content = os.urandom(2 * (1 << 20))
    upload(contributor_client, armoire.id, "moyen.bin", content)
    file = last_file()
    response = contributor_client.get(f"/fichiers/{file.id}/telecharger", buffered=False)
    received = []
    for chunk in response.response:
        received.append(chunk)
        assert not crypto_threads()
    response.close()
    assert b"".join(received) == content


def test_storage_full_is_a_507_and_leaves_nothing(app, contributor_client, armoire, storage_dir):
    """RLIMIT_FSIZE makes the blob write fail with EFBIG (CPython ignores SIGXFSZ)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = 16 << 20
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip("the file size hard limit is already below the test's")
    content = os.urandom(limit + (2 << 20))
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    body = multipart([("csrf_token", token)], [("file", "énorme.bin", content)])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        response = post_multipart(contributor_client, f"/armoires/{armoire.id}/televerser", body)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert response.status_code == 507
    assert "stockage du serveur est plein" in response.get_data(as_text=True)
    assert db.session.execute(db.select(File)).first() is None
    assert blob_files(storage_dir) == []
    assert list((storage_dir / "tmp").iterdir()) == []
    assert not crypto_threads()


def test_blob_store_full_in_a_subprocess(tmp_path: Path):
    script = textwrap.dedent(
        """
        import os, resource, sys
        from portal.storage.blobs import BlobStore, StorageFullError
        store = BlobStore(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            with store.create() as pending:
                for _ in range(4):
                    pending.file.write(os.urandom(512 * 1024))
        except StorageFullError as error:
            print("full", error.errno, sorted(os.listdir(store.temp)), list(store.iter_keys()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "blobs")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    import errno

    assert result.stdout.strip() == f"full {errno.EFBIG} [] []", result.stderr


def test_quota_lock_does_not_block_rows_that_reference_the_organisation(app, contributor):
    """An upload's quota lock must let another transaction journal (its insert takes FOR KEY
    SHARE on the organisation): with FOR UPDATE a download holding the journal head waited
    for the upload, which waited for the head, and PostgreSQL broke the deadlock with a 500."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from portal.audit.services import record

    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks: on SQLite the upload's IMMEDIATE transaction excludes every writer")
    org_id, user_id = contributor.organization_id, contributor.id
    quota.lock_organization(org_id)  # held until this session rolls back
    outcome: list[object] = []

    def journal_meanwhile() -> None:
        with app.app_context():
            try:
                db.session.execute(text("SET LOCAL lock_timeout = '3s'"))
                record("file.downloaded", Actor(org_id, user_id), target_type="file", target_id=1, target_label="x")
                db.session.flush()
                outcome.append("journalled")
            except OperationalError as error:
                outcome.append(error)
            finally:
                db.session.rollback()

    thread = threading.Thread(target=journal_meanwhile)
    thread.start()
    thread.join(timeout=30)
    db.session.rollback()
    assert outcome == ["journalled"], outcome
