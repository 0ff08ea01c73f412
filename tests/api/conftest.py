"""API fixtures: bearer tokens for users, armoires and stored files."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import portal.api.models  # noqa: F401  # create_all must see jetons_api
from portal.extensions import db


@pytest.fixture
def make_token(app) -> Callable[..., str]:
    """A live bearer token for ``user`` (the clear secret)."""
    from portal.api import services
    from portal.audit.context import Actor

    def factory(user, *, days: int = 30, name: str = "test") -> str:
        _token, secret = services.create_token(user, Actor(user.organization_id, user.id), name=name, days=days)
        db.session.commit()
        return secret

    return factory


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def make_armoire(app) -> Callable[..., object]:
    from portal.documents.models import Armoire

    def factory(org, name: str = "Comptabilité") -> Armoire:
        armoire = Armoire(organization_id=org.id, name=name)
        db.session.add(armoire)
        db.session.commit()
        return armoire

    return factory


@pytest.fixture
def store_file(app) -> Callable[..., object]:
    """A file stored through the documents service, as the web upload would."""
    from portal.audit.context import Actor
    from portal.documents.services import uploads

    def factory(user, armoire, name: str = "rapport.txt", content: bytes = b"bonjour\n", folder=None):
        version = uploads.store_upload(
            Actor(user.organization_id, user.id), armoire, folder, name, iter([content]), len(content)
        )
        db.session.commit()
        from portal.documents.models import File

        return db.session.get(File, version.file_id)

    return factory
