"""A blob corrupted after its first segment: every reader answers 409 or aborts, and journals it once.

The first segment authenticates, so the failure is found while the content is already
flowing: into a new blob (a restore) or to the client (a download, after the headers).
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import portal.api.models  # noqa: F401  # create_all must see jetons_api
from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.audit.services import chain_id_for
from portal.audit.verification import verify_chain
from portal.documents.models import File, FileVersion
from portal.documents.services import uploads
from portal.extensions import db
from portal.storage.blobs import get_blob_store
from tests.conftest import csrf
from tests.documents.conftest import blob_files

SEGMENT = 1 << 20
TAG = 16
# Four segments: the first and the last authenticate, the second is the one corrupted.
SIZE = 3 * SEGMENT + 700


def _blob_path(version: FileVersion) -> Path:
    return get_blob_store()._path(version.storage_key)


def corrupt(version: FileVersion, segment: int) -> None:
    """Flip one byte in the middle of ``segment`` of the version's blob on disk."""
    path = _blob_path(version)
    data = bytearray(path.read_bytes())
    segments = -(-version.size // SEGMENT)
    header = len(data) - version.size - segments * TAG
    data[header + segment * (SEGMENT + TAG) + SEGMENT // 2] ^= 0x40
    path.write_bytes(bytes(data))


def integrity_entries(file_id: int) -> list[AuditEntry]:
    db.session.commit()  # a fresh snapshot: the entry was committed by another session
    return list(
        db.session.execute(
            db.select(AuditEntry).where(AuditEntry.action == "file.integrity_failed", AuditEntry.target_id == file_id)
        ).scalars()
    )


def assert_journalled_once(file_id: int, version_number: int, org_id: int) -> None:
    entries = integrity_entries(file_id)
    assert len(entries) == 1, [entry.details for entry in entries]
    assert entries[0].details["version"] == version_number
    assert verify_chain(chain_id_for(org_id), checkpoint=False).ok


def version_count(file_id: int) -> int:
    db.session.commit()
    return db.session.execute(db.select(db.func.count()).where(FileVersion.file_id == file_id)).scalar_one()


@pytest.fixture
def two_versions(app, contributor, armoire):
    """A file whose version 1 is large (several segments) and version 2 small."""
    actor = Actor(contributor.organization_id, contributor.id)
    content = os.urandom(SIZE)
    first = uploads.store_upload(actor, armoire, None, "grand-livre.bin", iter([content]), len(content))
    db.session.commit()
    file = db.session.get(File, first.file_id)
    uploads.add_version(actor, file, "grand-livre.bin", iter([b"court"]), 5)
    db.session.commit()
    return file, first, content


def restore(client, file: File, number: int, **kwargs):
    token = csrf(client, f"/fichiers/{file.id}")
    return client.post(f"/fichiers/{file.id}/versions/{number}/restaurer", data={"csrf_token": token}, **kwargs)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_restore_of_a_version_corrupted_mid_blob_is_a_409(contributor_client, two_versions, storage_dir, htmx):
    file, first, _content = two_versions
    corrupt(first, segment=1)
    blobs_before = sorted(blob_files(storage_dir))
    headers = {"HX-Request": "true"} if htmx else {}
    response = restore(contributor_client, file, 1, headers=headers)
    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert "intégrité" in text
    assert ("<html" in text) is not htmx
    assert version_count(file.id) == 2
    assert sorted(blob_files(storage_dir)) == blobs_before
    assert not [p for p in storage_dir.rglob("*") if p.is_file() and p not in blobs_before]
    assert_journalled_once(file.id, 1, file.organization_id)


def test_restore_of_a_version_corrupted_in_its_first_segment_is_a_409(contributor_client, two_versions, storage_dir):
    file, first, _content = two_versions
    corrupt(first, segment=0)
    blobs_before = sorted(blob_files(storage_dir))
    response = restore(contributor_client, file, 1)
    assert response.status_code == 409
    assert "intégrité" in response.get_data(as_text=True)
    assert version_count(file.id) == 2
    assert sorted(blob_files(storage_dir)) == blobs_before
    assert_journalled_once(file.id, 1, file.organization_id)


@pytest.mark.parametrize("path", ["telecharger", "apercu"])
def test_web_download_and_preview_cut_mid_stream_are_journalled_once(
    app, contributor, contributor_client, armoire, path
):
    actor = Actor(contributor.organization_id, contributor.id)
    content = os.urandom(SIZE)
    # A PDF can be previewed; the content after the magic is random.
    content = b"%PDF-1.7\n" + content[9:]
    version = uploads.store_upload(actor, armoire, None, "relevé.pdf", iter([content]), len(content))
    db.session.commit()
    corrupt(version, segment=1)
    response = contributor_client.get(f"/fichiers/{version.file_id}/{path}?version=1", buffered=False)
    assert response.status_code == 200  # the first segment authenticated: the headers went out
    received = bytearray()
    with pytest.raises(Exception):  # noqa: B017 - the server aborts the connection, whatever the type
        for chunk in response.response:
            received.extend(chunk)
    response.close()
    assert bytes(received) == content[:SEGMENT]
    assert_journalled_once(version.file_id, 1, contributor.organization_id)


class LiveServer:
    """The portal behind werkzeug's threaded server on loopback: real sockets, real aborts."""

    def __init__(self, app) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture
def live_server(app_factory) -> Iterator[LiveServer]:
    server = LiveServer(app_factory(SERVER_NAME=None))
    yield server
    server.stop()


def test_api_download_cut_mid_stream_is_incomplete_and_journalled_once(app, contributor, armoire, live_server):
    from portal.api.services import create_token

    actor = Actor(contributor.organization_id, contributor.id)
    content = os.urandom(SIZE)
    version = uploads.store_upload(actor, armoire, None, "grand-livre.bin", iter([content]), len(content))
    _token, secret = create_token(contributor, actor, name="test")
    db.session.commit()
    corrupt(version, segment=1)

    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=30)
    connection.request(
        "GET", f"/api/v1/fichiers/{version.file_id}/contenu", headers={"Authorization": f"Bearer {secret}"}
    )
    response = connection.getresponse()
    assert response.status == 200  # the first segment authenticated: the headers went out
    announced = int(response.getheader("Content-Length"))
    assert announced == SIZE
    # read() with no size checks the body against Content-Length and raises when it falls short.
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    received = cut.value.partial
    connection.close()
    # The client can tell: fewer bytes than announced, and never a byte of the bad segment.
    assert len(received) < announced
    assert bytes(received) == content[: len(received)]
    assert len(received) <= SEGMENT
    assert_journalled_once(version.file_id, 1, contributor.organization_id)


def test_concurrent_failures_each_journal_once_and_keep_the_chain(app, contributor, armoire, live_server):
    """Each failing stream writes its entry in its own transaction, alongside the others."""
    from portal.api.services import create_token

    actor = Actor(contributor.organization_id, contributor.id)
    content = os.urandom(SIZE)
    version = uploads.store_upload(actor, armoire, None, "grand-livre.bin", iter([content]), len(content))
    _token, secret = create_token(contributor, actor, name="test")
    db.session.commit()
    corrupt(version, segment=1)
    readers = 4
    barrier = threading.Barrier(readers)
    outcomes: list[str] = []

    def download() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=60)
        barrier.wait()
        connection.request(
            "GET", f"/api/v1/fichiers/{version.file_id}/contenu", headers={"Authorization": f"Bearer {secret}"}
        )
        response = connection.getresponse()
        try:
            response.read()
            outcomes.append("complete")
        except http.client.IncompleteRead:
            outcomes.append("cut")
        finally:
            connection.close()

    threads = [threading.Thread(target=download) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == ["cut"] * readers
    entries = integrity_entries(version.file_id)
    assert len(entries) == readers
    assert verify_chain(chain_id_for(contributor.organization_id), checkpoint=False).ok


def test_a_reader_outside_any_request_gets_the_same_entry(app, contributor, armoire):
    """What a backup would do: read a version in a job, with no request and no response."""
    from portal.documents.errors import IntegrityFailure
    from portal.documents.services.reading import open_version_stream

    actor = Actor(contributor.organization_id, contributor.id)
    content = os.urandom(SIZE)
    version = uploads.store_upload(actor, armoire, None, "grand-livre.bin", iter([content]), len(content))
    db.session.commit()
    corrupt(version, segment=2)
    file = db.session.get(File, version.file_id)
    _version, chunks = open_version_stream(actor, file, 1, record_access=False)
    db.session.commit()  # a reader holds no transaction while it streams
    received = bytearray()
    with pytest.raises(IntegrityFailure) as failure:
        for chunk in chunks:
            received.extend(chunk)
    assert failure.value.journalled and failure.value.status == 409
    assert bytes(received) == content[: 2 * SEGMENT]
    assert_journalled_once(version.file_id, 1, contributor.organization_id)


def test_api_download_failing_its_first_segment_is_a_409_problem(app, contributor, armoire):
    from portal.api.services import create_token

    actor = Actor(contributor.organization_id, contributor.id)
    content = os.urandom(SIZE)
    version = uploads.store_upload(actor, armoire, None, "grand-livre.bin", iter([content]), len(content))
    _token, secret = create_token(contributor, actor, name="test")
    db.session.commit()
    corrupt(version, segment=0)
    response = app.test_client().get(
        f"/api/v1/fichiers/{version.file_id}/contenu", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert "intégrité" in response.get_json()["detail"]
    assert_journalled_once(version.file_id, 1, contributor.organization_id)


def test_zip_leaves_out_or_marks_damaged_files_names_them_and_journals_each(
    app, contributor, contributor_client, armoire
):
    """A blob failing before its first byte is left out; one failing mid-stream cannot be
    extracted as if whole (its CRC cannot match); the archive ends with ERREUR-integrite.txt
    naming both, the sound file comes intact, and each failure is journalled once."""
    import io
    import zipfile

    actor = Actor(contributor.organization_id, contributor.id)
    contents = {name: os.urandom(SIZE) for name in ("cassé-début.bin", "cassé-milieu.bin", "sain.bin")}
    versions = {
        name: uploads.store_upload(actor, armoire, None, name, iter([content]), len(content))
        for name, content in contents.items()
    }
    db.session.commit()
    corrupt(versions["cassé-début.bin"], segment=0)
    corrupt(versions["cassé-milieu.bin"], segment=1)
    ids = [str(versions[name].file_id) for name in contents]
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    response = contributor_client.post(f"/armoires/{armoire.id}/selection/zip", data={"csrf_token": token, "ids": ids})
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert archive.namelist() == ["cassé-milieu.bin", "sain.bin", "ERREUR-integrite.txt"]
    assert archive.read("sain.bin") == contents["sain.bin"]
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        archive.read("cassé-milieu.bin")
    report = archive.read("ERREUR-integrite.txt").decode()
    left_out, incomplete = report.split("incomplets")
    assert "- cassé-début.bin" in left_out and "- cassé-milieu.bin" in incomplete
    assert "sain.bin" not in report
    assert "consigné dans le journal" in report
    assert_journalled_once(versions["cassé-début.bin"].file_id, 1, contributor.organization_id)
    assert_journalled_once(versions["cassé-milieu.bin"].file_id, 1, contributor.organization_id)
    assert integrity_entries(versions["sain.bin"].file_id) == []


def test_zip_of_a_file_whose_content_is_gone_leaves_it_out_without_claiming_a_journal_entry(
    contributor, contributor_client, armoire
):
    """Content already gone (here a blob recorded missing) is no integrity failure: the file
    is left out and named, nothing is journalled, and the report does not say it was."""
    import io
    import zipfile

    actor = Actor(contributor.organization_id, contributor.id)
    gone = uploads.store_upload(actor, armoire, None, "disparu.txt", iter([b"parti"]), 5)
    kept = uploads.store_upload(actor, armoire, None, "present.txt", iter([b"encore"]), 6)
    gone.blob_missing = True
    db.session.commit()
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    ids = [str(gone.file_id), str(kept.file_id)]
    response = contributor_client.post(f"/armoires/{armoire.id}/selection/zip", data={"csrf_token": token, "ids": ids})
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert archive.namelist() == ["present.txt", "ERREUR-integrite.txt"]
    report = archive.read("ERREUR-integrite.txt").decode()
    assert "- disparu.txt" in report and "consigné dans le journal" not in report
    assert integrity_entries(gone.file_id) == []
