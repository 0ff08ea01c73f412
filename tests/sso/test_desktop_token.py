"""An SSO-only member gets a desktop token from the portal's token page: no password
grant for them, and the sensitive-action re-authentication goes through the provider."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.api.models import ApiToken
from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.sso.models import SsoPolicy
from tests.auth.support import text
from tests.conftest import csrf_token_from
from tests.sso.conftest import callback_path


def test_sso_only_member_creates_a_desktop_token(client, app, make_org, providers, clock):
    org = make_org()
    db.session.add(SsoPolicy(organization_id=org.id, allowed_domains="example.org", jit_enabled=True))
    db.session.commit()
    alpha = providers["alpha"]
    claims = {"email": "desk@example.org", "email_verified": True}
    alpha.set_user("desk", claims)
    page = text(client.get("/auth/login"))
    location = alpha.authorize(
        client.post("/auth/sso/alpha/start", data={"csrf_token": csrf_token_from(page)}).headers["Location"], "desk"
    )
    assert client.get(callback_path(location)).status_code in (302, 303)

    clock.advance(minutes=app.config["REAUTH_MINUTES"] + 1)
    page = text(client.get("/me/jetons"))
    response = client.post("/me/jetons", data={"csrf_token": csrf_token_from(page), "name": "Poste", "days": "30"})
    assert response.status_code == 401 and 'data-sso-reauth="alpha"' in text(response)
    form = text(response)
    start = client.post(
        "/auth/sso/alpha/start", data={"csrf_token": csrf_token_from(form), "next": "/me/jetons"}
    ).headers["Location"]
    back = client.get(callback_path(alpha.authorize(start, "desk")))
    assert back.status_code in (302, 303) and back.headers["Location"].endswith("/me/jetons")

    page = text(client.get("/me/jetons"))
    response = client.post("/me/jetons", data={"csrf_token": csrf_token_from(page), "name": "Poste", "days": "30"})
    assert response.status_code == 201, text(response)
    secret = re.search(r'<code id="new-token">(cof_[A-Za-z0-9_\-]+)</code>', text(response))
    assert secret
    assert db.session.execute(select(ApiToken)).scalar_one().name == "Poste"
    outcomes = [
        e.details.get("outcome")
        for e in db.session.execute(select(AuditEntry).where(AuditEntry.action == "sso.login")).scalars()
    ]
    assert outcomes == ["signed_in", "reauthenticated"]
    # The token works on the API; the password grant has nothing to check for this member.
    api = app.test_client()
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 200
    grant = api.post("/api/v1/auth/token", json={"email": "desk@example.org", "password": "anything at all here"})
    assert grant.status_code == 401


def test_another_account_cannot_reauthenticate_the_session(client, app, make_org, providers, clock):
    org = make_org()
    db.session.add(SsoPolicy(organization_id=org.id, allowed_domains="example.org", jit_enabled=True))
    db.session.commit()
    alpha = providers["alpha"]
    for sub in ("one", "two"):
        alpha.set_user(sub, {"email": f"{sub}@example.org", "email_verified": True})
    page = text(client.get("/auth/login"))
    start = client.post("/auth/sso/alpha/start", data={"csrf_token": csrf_token_from(page)}).headers["Location"]
    client.get(callback_path(alpha.authorize(start, "one")))
    page = text(client.get("/me/jetons"))
    start = client.post("/auth/sso/alpha/start", data={"csrf_token": csrf_token_from(page), "next": "/me/jetons"})
    response = client.get(callback_path(alpha.authorize(start.headers["Location"], "two")))
    assert response.status_code == 400
    from portal.auth.models import User

    assert db.session.execute(select(User.email)).scalars().all() == ["one@example.org"]


def test_an_sso_only_member_is_not_offered_a_password_form_on_me(client, make_org, providers):
    org = make_org()
    org.require_2fa = False
    db.session.add(SsoPolicy(organization_id=org.id, allowed_domains="example.org", jit_enabled=True))
    db.session.commit()
    alpha = providers["alpha"]
    alpha.set_user("solo", {"email": "solo@example.org", "email_verified": True})
    page = text(client.get("/auth/login"))
    location = alpha.authorize(
        client.post("/auth/sso/alpha/start", data={"csrf_token": csrf_token_from(page)}).headers["Location"], "solo"
    )
    assert client.get(callback_path(location)).status_code in (302, 303)
    me = text(client.get("/me"))
    assert 'id="sso-only-password"' in me and 'id="password-form"' not in me
    assert "protégé que par le mot de passe" not in me
