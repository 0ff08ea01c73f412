"""The blob store: opaque names, permissions, atomic writes, temp sweep, and no plaintext on disk."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from portal.crypto import envelope
from portal.crypto.streaming import EncryptingWriter, associated_data, decrypt_stream, plaintext_length
from portal.extensions import db
from portal.storage.blobs import BlobStore, InvalidBlobKeyError, get_blob_store


def all_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_layout_and_permissions(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "storage")
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.temp.stat().st_mode) == 0o700
    with store.create() as pending:
        pending.file.write(b"ciphertext")
        assert pending.key is None
    key = pending.key
    assert key is not None and len(key) == 32 and int(key, 16) >= 0
    path = store.root / key[:2] / key[2:4] / key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(store.iter_keys()) == [key]
    assert store.size(key) == 10 and store.exists(key)
    with store.open(key) as handle:
        assert handle.read() == b"ciphertext"
    assert all_files(store.temp) == []


def test_existing_root_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    BlobStore(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_exception_inside_create_leaves_no_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "storage")
    with pytest.raises(RuntimeError, match="upload interrupted"), store.create() as pending:
        pending.file.write(b"x" * 1000)
        assert len(all_files(store.temp)) == 1
        raise RuntimeError("upload interrupted")
    assert pending.key is None
    assert all_files(store.root) == []
    assert list(store.iter_keys()) == []


def test_delete(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "storage")
    with store.create() as pending:
        pending.file.write(b"abc")
    store.delete(pending.key)
    assert not store.exists(pending.key) and list(store.iter_keys()) == []
    store.delete(pending.key)  # missing is fine


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 32, "0" * 31, "", "0" * 32 + "/x", "0" * 31 + "\x00"])
def test_invalid_keys_never_become_paths(tmp_path: Path, key: str) -> None:
    store = BlobStore(tmp_path / "storage")
    for operation in (store.open, store.size, store.delete, store.exists):
        with pytest.raises(InvalidBlobKeyError):
            operation(key)


def test_iter_keys_ignores_strays(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "storage")
    with store.create() as pending:
        pending.file.write(b"a")
    (store.root / "README").write_text("stray")
    (store.root / "ab" / "cd").mkdir(parents=True)
    (store.root / "ab" / "cd" / ("ff" * 16)).write_bytes(b"misplaced")
    assert list(store.iter_keys()) == [pending.key]


def test_sweep_temp_only_removes_old_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "storage")
    old, recent = store.temp / "old.part", store.temp / "recent.part"
    old.write_bytes(b"left by a crash")
    recent.write_bytes(b"being written")
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    assert store.sweep_temp(older_than_seconds=3600, now=now) == 1
    assert not old.exists() and recent.exists()
    assert store.sweep_temp(older_than_seconds=0, now=now + 1) == 1
    assert all_files(store.temp) == []


def test_get_blob_store_uses_configured_root(app) -> None:
    store = get_blob_store()
    assert store.root == Path(app.config["COFFRE_STORAGE_DIR"])
    assert get_blob_store() is store


def test_encrypted_upload_puts_no_plaintext_on_disk(app, org) -> None:
    """The whole path the documents feature takes: data key, streaming encryption into the
    store, then reading back. No file under the storage root or the instance holds plaintext."""
    marker = b"CONFIDENTIEL-bulletin-de-paie-Awa-Diallo-"
    plaintext = marker * 60000  # ~2.4 MiB: several segments
    uid = "7" * 32
    ctx = {"org": str(org.id), "version": uid}
    row, key = envelope.new_data_key(org.id, ctx)
    aad = associated_data(org.id, uid)
    store = get_blob_store()
    with store.create() as pending:
        writer = EncryptingWriter(pending.file, key, aad)
        for offset in range(0, len(plaintext), 64 * 1024):
            writer.write(plaintext[offset : offset + 64 * 1024])
        writer.finish()
    db.session.commit()

    assert plaintext_length(store.size(pending.key)) == len(plaintext)
    instance = Path(app.instance_path)
    for path in [*all_files(store.root), *all_files(instance)]:
        content = path.read_bytes()
        assert marker not in content, path
        assert key not in content, path
    if db.engine.dialect.name == "sqlite":
        # The wrapped key is all the database holds: the data key is in no page and no WAL frame.
        database = Path(db.engine.url.database)
        for path in database.parent.glob(database.name + "*"):
            assert key not in path.read_bytes(), path
    with store.open(pending.key) as handle:
        opened = envelope.open_data_key(row, ctx)
        assert b"".join(decrypt_stream(handle, opened, aad)) == plaintext


def test_rotation_does_not_touch_blobs_and_keeps_them_readable(app, org) -> None:
    store = get_blob_store()
    blobs = []
    for n in (1, 2, 3):
        ctx = {"org": str(org.id), "file": str(n), "version": str(n) * 32}
        row, key = envelope.new_data_key(org.id, ctx)
        content = os.urandom(1000 * n)
        with store.create() as pending:
            writer = EncryptingWriter(pending.file, key, associated_data(org.id, str(n) * 32, n))
            writer.write(content)
            writer.finish()
        with store.open(pending.key) as handle:
            blobs.append((row.id, ctx, n, pending.key, content, handle.read()))
    db.session.commit()

    envelope.rotate_master_key()
    envelope.rewrap_all()
    db.session.commit()
    envelope.retire_master_key(1)

    from portal.crypto.models import DataKey

    for row_id, ctx, n, blob_key, content, raw_before in blobs:
        with store.open(blob_key) as handle:
            assert handle.read() == raw_before  # no content was re-encrypted
            key = envelope.open_data_key(db.session.get(DataKey, row_id), ctx)
            assert b"".join(decrypt_stream(handle, key, associated_data(org.id, str(n) * 32, n))) == content


def test_new_blob_directories_are_made_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each directory created for a blob has its parent fsynced, not only the leaf, before
    ``create`` returns. The fsyncs are issued together after the rename (one journal commit,
    not one per level), and the temporary directory is left to sweep_temp (see ``create``)."""
    from portal.storage import blobs

    store = BlobStore(tmp_path / "storage")
    synced: list[tuple[Path, bool]] = []
    real = blobs._fsync_dir

    def recording(path: Path) -> None:
        renamed = any(p.is_file() for p in store.root.glob("??/??/*"))
        synced.append((Path(path), renamed))
        real(path)

    monkeypatch.setattr(blobs, "_fsync_dir", recording)
    with store.create() as pending:
        pending.file.write(b"x")
    key = pending.key
    first, second = store.root / key[:2], store.root / key[:2] / key[2:4]
    paths = [path for path, _ in synced]
    assert store.root in paths  # holds the new root/ab entry
    assert first in paths  # holds the new root/ab/cd entry
    assert second in paths  # holds the blob's entry after the rename
    assert all(renamed for _, renamed in synced)
    assert store.temp not in paths
    assert len(paths) == 3


def test_full_errors_become_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from portal.storage.blobs import StorageFullError

    store = BlobStore(tmp_path / "storage")
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        with pytest.raises(StorageFullError) as caught, store.create() as pending:
            pending.file.write(b"x" * 10)
            raise OSError(code, os.strerror(code))
        assert caught.value.errno == code
    with pytest.raises(OSError) as other, store.create():
        raise OSError(errno.EIO, "I/O error")
    assert not isinstance(other.value, StorageFullError)
    assert all_files(store.root) == []
