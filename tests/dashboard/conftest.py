"""Dashboard fixtures: real uploads, downloads and deletions through the document services,
on days chosen by moving the journal's clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from portal.audit.context import Actor
from portal.extensions import db


@contextmanager
def on_day(monkeypatch: pytest.MonkeyPatch, days_ago: int) -> Iterator[None]:
    """Journal entries written inside are dated ``days_ago`` days before now (UTC noon).

    Only the journal's clock moves (``portal.audit.services.utcnow``): entries written
    in the past are what a dashboard period is about, and nothing else can date them.
    """
    import portal.audit.services as audit_services

    moment = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    with monkeypatch.context() as patch:
        patch.setattr(audit_services, "utcnow", lambda: moment)
        yield


@pytest.fixture
def docs(app) -> Callable[..., object]:
    """Real document actions: ``docs.armoire``, ``docs.upload``, ``docs.download``, ``docs.trash``."""
    from portal.documents.models import File
    from portal.documents.services import armoires, reading, trash, uploads

    class Docs:
        @staticmethod
        def armoire(user, name: str):
            armoire = armoires.create_armoire(Actor(user.organization_id, user.id), name)
            db.session.commit()
            return armoire

        @staticmethod
        def upload(user, armoire, name: str, content: bytes):
            version = uploads.store_upload(
                Actor(user.organization_id, user.id), armoire, None, name, iter([content]), len(content)
            )
            db.session.commit()
            return db.session.get(File, version.file_id)

        @staticmethod
        def new_version(user, file, content: bytes):
            uploads.add_version(Actor(user.organization_id, user.id), file, None, iter([content]), len(content))
            db.session.commit()

        @staticmethod
        def download(user, file, ip: str = "192.0.2.10"):
            reading.record_download(Actor(user.organization_id, user.id, ip=ip), file.id, file.name, 1, preview=False)
            db.session.commit()

        @staticmethod
        def trash(user, file):
            trash.trash_file(Actor(user.organization_id, user.id), file)
            db.session.commit()

    return Docs()
