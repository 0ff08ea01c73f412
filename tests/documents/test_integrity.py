"""End to end through HTTP: tampered, truncated, swapped and reordered blobs never serve bytes."""

from __future__ import annotations

import os

import pytest

from portal.audit.models import AuditEntry
from portal.documents.models import FileVersion
from portal.extensions import db
from portal.storage.blobs import get_blob_store
from tests.documents.conftest import last_file, upload

SEGMENT = 1 << 20


def blob_path(version: FileVersion):
    return get_blob_store()._path(version.storage_key)


def current_version(file) -> FileVersion:
    return db.session.get(FileVersion, file.current_version_id)


def integrity_entries() -> list[AuditEntry]:
    return list(db.session.execute(db.select(AuditEntry).where(AuditEntry.action == "file.integrity_failed")).scalars())


def assert_refused(client, file) -> None:
    response = client.get(f"/fichiers/{file.id}/telecharger")
    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert "intégrité" in text
    assert response.headers["Content-Type"].startswith("text/html")
    entries = integrity_entries()
    assert entries and entries[-1].target_id == file.id


@pytest.fixture
def stored(contributor_client, armoire):
    content = os.urandom(2 * SEGMENT + 500)
    assert upload(contributor_client, armoire.id, "données.bin", content).status_code == 201
    return last_file(), content


def test_flipped_byte_is_detected(contributor_client, stored):
    file, _content = stored
    path = blob_path(current_version(file))
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    assert_refused(contributor_client, file)


def test_truncated_blob_is_detected(contributor_client, stored):
    file, _content = stored
    path = blob_path(current_version(file))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 600])
    assert_refused(contributor_client, file)


def test_truncation_at_a_segment_boundary_is_detected(contributor_client, stored):
    file, _content = stored
    path = blob_path(current_version(file))
    data = path.read_bytes()
    # Drop the whole last segment: sizes still look plausible, the final flag is missing.
    header = len(data) - (2 * SEGMENT + 500) - 3 * 16
    path.write_bytes(data[: header + 2 * (SEGMENT + 16)])
    response = contributor_client.get(f"/fichiers/{file.id}/telecharger")
    assert response.status_code == 409


def test_reordered_segments_are_detected(contributor_client, stored):
    file, _content = stored
    path = blob_path(current_version(file))
    data = path.read_bytes()
    header = len(data) - (2 * SEGMENT + 500) - 3 * 16
    sealed = SEGMENT + 16
    first, second = data[header : header + sealed], data[header + sealed : header + 2 * sealed]
    path.write_bytes(data[:header] + second + first + data[header + 2 * sealed :])
    assert_refused(contributor_client, file)


def test_swapped_blobs_between_files_are_detected(contributor_client, armoire):
    upload(contributor_client, armoire.id, "a.bin", os.urandom(5000))
    first = last_file()
    upload(contributor_client, armoire.id, "b.bin", os.urandom(5000))
    second = last_file()
    path_a, path_b = blob_path(current_version(first)), blob_path(current_version(second))
    data_a, data_b = path_a.read_bytes(), path_b.read_bytes()
    path_a.write_bytes(data_b)
    path_b.write_bytes(data_a)
    assert_refused(contributor_client, first)
    assert_refused(contributor_client, second)


def test_mid_stream_failure_aborts_without_serving_the_bad_segment(contributor_client, stored):
    file, content = stored
    path = blob_path(current_version(file))
    data = bytearray(path.read_bytes())
    header = len(data) - (2 * SEGMENT + 500) - 3 * 16
    data[header + (SEGMENT + 16) + 10] ^= 0xFF  # inside the second segment
    path.write_bytes(bytes(data))
    response = contributor_client.get(f"/fichiers/{file.id}/telecharger", buffered=False)
    assert response.status_code == 200  # the first segment authenticated; headers went out
    received = bytearray()
    with pytest.raises(Exception):  # noqa: B017 - the connection is aborted, whatever the exception type
        for chunk in response.response:
            received.extend(chunk)
    assert bytes(received) == content[:SEGMENT]
    response.close()
    assert integrity_entries()


def test_wrong_master_key_fails_cleanly(app_factory, contributor_client, stored, tmp_path):
    file, _content = stored
    from portal.crypto import keys

    # A different keyring: the data key cannot be unwrapped.
    db.session.commit()  # release SQLite's write lock held by this context's session
    other = app_factory(COFFRE_MASTER_KEY_FILE=str(tmp_path / "other.key"))
    with other.app_context():
        from portal.auth.models import User
        from portal.auth.sessions import open_session_for

        user = db.session.execute(db.select(User).where(User.role == "contributeur")).scalars().first()
        client = other.test_client()
        with client.session_transaction() as session:
            open_session_for(user, session)
        db.session.commit()
        response = client.get(f"/fichiers/{file.id}/telecharger")
        assert response.status_code == 409
        assert "clé" in response.get_data(as_text=True)
    assert keys  # the module is what provides the keyring
