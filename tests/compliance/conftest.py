"""Compliance fixtures: API tokens, an armoire with a folder and a stored file."""

from __future__ import annotations

import pytest

from tests.api.conftest import bearer, make_armoire, make_token, store_file  # noqa: F401


@pytest.fixture
def admin_token(make_token, admin) -> dict[str, str]:  # noqa: F811
    """The admin's bearer header."""
    return bearer(make_token(admin))


@pytest.fixture
def tree(app, admin, make_armoire, store_file):  # noqa: F811
    """An armoire > folder > file of the admin's organisation."""
    from portal.audit.context import Actor
    from portal.documents.services import folders
    from portal.extensions import db

    armoire = make_armoire(admin.organization, "Comptabilité")
    folder = folders.create_folder(Actor(admin.organization_id, admin.id), armoire, None, "2026")
    db.session.commit()
    file = store_file(admin, armoire, "bilan.pdf", b"%PDF-1.4 bilan\n", folder=folder)
    return armoire, folder, file
