"""/me/jetons: create (secret shown once), list, revoke; CSRF and ownership enforced."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.api.models import ApiToken
from portal.extensions import db
from tests.conftest import csrf


def test_create_list_and_revoke(contributor_client, contributor):
    token = csrf(contributor_client, "/me/jetons")
    created = contributor_client.post("/me/jetons", data={"csrf_token": token, "name": "Scanner", "days": "7"})
    assert created.status_code == 201
    secret = re.search(r'<code id="new-token">(cof_[A-Za-z0-9_-]+)</code>', created.get_data(as_text=True)).group(1)
    row = db.session.execute(select(ApiToken)).scalar_one()
    assert row.name == "Scanner" and row.user_id == contributor.id
    api = contributor_client.application.test_client()
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listing = contributor_client.get("/me/jetons").get_data(as_text=True)
    assert "Scanner" in listing and secret not in listing
    revoked = contributor_client.post(f"/me/jetons/{row.id}/revoquer", data={"csrf_token": token})
    assert revoked.status_code == 200
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_invalid_form_is_422_and_csrf_is_required(contributor_client):
    token = csrf(contributor_client, "/me/jetons")
    assert (
        contributor_client.post("/me/jetons", data={"csrf_token": token, "name": "", "days": "999"}).status_code == 422
    )
    assert contributor_client.post("/me/jetons", data={"name": "x", "days": "7"}).status_code == 400
    assert db.session.execute(select(ApiToken)).first() is None


def test_cannot_revoke_someone_elses_token(login_as, contributor, reader, make_token):
    make_token(reader)
    row = db.session.execute(select(ApiToken)).scalar_one()
    client = login_as(contributor)
    token = csrf(client, "/me/jetons")
    assert client.post(f"/me/jetons/{row.id}/revoquer", data={"csrf_token": token}).status_code == 404
    db.session.rollback()
    assert db.session.execute(select(ApiToken.revoked_at)).scalar_one() is None


def test_anonymous_is_sent_to_login(client):
    assert client.get("/me/jetons").status_code in (302, 401)
