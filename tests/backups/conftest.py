"""Backup fixtures: an admin token, stored files, and waiting for the background work."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_armoire, make_token, store_file  # noqa: F401


@pytest.fixture
def wait(app):
    from portal.backups import executor

    def drain() -> None:
        executor.drain(app)
        from portal.extensions import db

        db.session.rollback()  # see what the worker committed
        db.session.expire_all()

    return drain


def read_contents(path: str) -> dict:
    """A backup's files, versions, members and journal (any manifest format), signature checked."""
    from portal.backups.manifests import Manifest
    from portal.backups.repository import get_repository

    manifest = Manifest.load(get_repository(), path)
    return {
        "organization_id": manifest.organization_id,
        "files": manifest.files(),
        "versions": manifest.versions(),
        "members": manifest.members(),
        "journal": manifest.journal(),
    }


def object_bytes(digest: str) -> bytes:
    """A stored object's bytes, in a file of its own or in a pack."""
    from portal.backups.repository import get_repository

    path, offset, length = get_repository().locate(digest)
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def damage_object(digest: str, change) -> None:
    """Overwrite a stored object in place with ``change(its bytes)`` (same length)."""
    from portal.backups.repository import get_repository

    path, offset, length = get_repository().locate(digest)
    data = change(object_bytes(digest))
    assert len(data) == length
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def flip_byte(position: int):
    def change(data: bytes) -> bytes:
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        return bytes(damaged)

    return change


def lose_object(digest: str) -> None:
    """Make an object missing: its file goes, or its pack's index stops naming it."""
    import json

    from portal.backups.repository import get_repository

    repository = get_repository()
    path, _offset, _length = repository.locate(digest)
    if path.suffix != ".pack":
        path.unlink()
        return
    idx = path.with_suffix(".idx")
    entries = [e for e in json.loads(idx.read_bytes()) if e[0] != digest]
    idx.write_text(json.dumps(entries))
    from portal.backups.packs import PackIndex

    repository.packs = PackIndex(repository.root, repository.tmp)  # forget what it had read


def packed_objects() -> set[str]:
    """Every object the packs' indexes name."""
    import json

    from portal.backups.repository import get_repository

    directory = get_repository().root / "packs"
    return {e[0] for idx in directory.glob("*.idx") for e in json.loads(idx.read_bytes())}
