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
