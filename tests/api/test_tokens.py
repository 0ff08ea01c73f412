"""Token lifecycle: issue, 2FA, expiry, revocation, deactivation; cookies are ignored."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from portal.api.models import ApiToken
from portal.audit.models import AuditEntry
from portal.database import utcnow
from portal.extensions import db
from tests.conftest import TEST_PASSWORD

TOKEN_URL = "/api/v1/auth/token"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def actions(org_id: int) -> list[str]:
    return list(
        db.session.execute(
            select(AuditEntry.action).where(AuditEntry.organization_id == org_id).order_by(AuditEntry.id)
        ).scalars()
    )


def test_password_login_issues_a_hashed_token_that_authenticates(client, contributor):
    response = client.post(TOKEN_URL, json={"email": contributor.email, "password": TEST_PASSWORD, "name": "Poste"})
    assert response.status_code == 201
    body = response.get_json()
    secret = body["token"]
    assert secret.startswith("cof_") and len(secret) >= 40
    assert body["token_type"] == "Bearer" and body["name"] == "Poste"
    assert "Set-Cookie" not in response.headers
    row = db.session.execute(select(ApiToken)).scalar_one()
    assert row.token_hash != secret and secret not in row.token_hash and row.prefix == secret[:8]
    assert row.expires_at - row.created_at == timedelta(days=30)
    me = client.get("/api/v1/me", headers=bearer(secret))
    assert me.status_code == 200
    data = me.get_json()
    assert data["email"] == contributor.email and data["role"] == "contributeur"
    assert "document.write" in data["permissions"]
    text = me.get_data(as_text=True)
    assert "password" not in text and "totp" not in text and "hash" not in text
    assert "token.created" in actions(contributor.organization_id)


def test_wrong_password_is_401_problem(client, contributor):
    response = client.post(TOKEN_URL, json={"email": contributor.email, "password": "nope nope nope"})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "/problems/invalid-credentials"
    assert db.session.execute(select(ApiToken)).first() is None
    assert "user.login_failed" in actions(contributor.organization_id)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"email": 12, "password": TEST_PASSWORD},
        {"email": "a@b.c", "password": ["x"]},
        {"email": "a@b.c\x00", "password": "x"},
        {"email": "a@b.c", "password": "x", "expires_in_days": 10**30},
        {"email": "a@b.c", "password": "x", "expires_in_days": True},
    ],
)
def test_bad_token_requests_are_422(client, payload):
    response = client.post(TOKEN_URL, json=payload)
    assert response.status_code == 422
    body = response.get_json()
    assert body["type"] == "/problems/validation" and body["errors"]


def test_non_object_json_and_other_media_types(client):
    assert client.post(TOKEN_URL, data="[1]", content_type="application/json").status_code == 400
    assert client.post(TOKEN_URL, data="{", content_type="application/json").status_code == 400
    assert client.post(TOKEN_URL, data="x", content_type="text/plain").status_code == 415


def test_form_encoded_login_and_custom_expiry(client, reader):
    response = client.post(TOKEN_URL, data={"email": reader.email, "password": TEST_PASSWORD, "expires_in_days": "2"})
    assert response.status_code == 201
    row = db.session.execute(select(ApiToken)).scalar_one()
    assert row.expires_at - row.created_at == timedelta(days=2)


def test_org_requiring_2fa_refuses_a_user_without_it(client, make_org, make_user):
    org = make_org("Stricte", require_2fa=True)
    user = make_user("admin", org=org)
    response = client.post(TOKEN_URL, json={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/two-factor-enrollment-required"
    assert db.session.execute(select(ApiToken)).first() is None


def test_existing_token_stops_when_org_starts_requiring_2fa(client, contributor, make_token):
    secret = make_token(contributor)
    contributor.organization.require_2fa = True
    db.session.commit()
    response = client.get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/two-factor-enrollment-required"


@pytest.fixture
def totp_user(make_user, org):
    from portal.security import totp

    user = make_user("contributeur", org=org)
    secret = totp.new_secret()
    user.two_factor_method = "totp"
    user.totp_secret_encrypted = totp.encrypt_secret(secret, user.id)
    user.two_factor_enabled_at = utcnow()
    db.session.commit()
    user.clear_secret = secret
    return user


def test_totp_user_needs_a_current_code(client, totp_user):
    credentials = {"email": totp_user.email, "password": TEST_PASSWORD}
    missing = client.post(TOKEN_URL, json=credentials)
    assert missing.status_code == 401
    assert missing.get_json()["type"] == "/problems/two-factor-required"
    wrong = client.post(TOKEN_URL, json=credentials | {"code": "000000"})
    assert wrong.status_code == 401
    assert db.session.execute(select(ApiToken)).first() is None
    code = pyotp.TOTP(totp_user.clear_secret).now()
    ok = client.post(TOKEN_URL, json=credentials | {"code": code})
    assert ok.status_code == 201, ok.get_json()
    # The same code cannot be replayed for a second token.
    again = client.post(TOKEN_URL, json=credentials | {"code": code})
    assert again.status_code == 401
    assert "user.2fa_failed" in actions(totp_user.organization_id)


def test_expired_token_is_refused(client, contributor, make_token):
    secret = make_token(contributor, days=1)
    row = db.session.execute(select(ApiToken)).scalar_one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = client.get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.get_json()["type"] == "/problems/unauthorized"


def test_delete_revokes_the_current_token(client, contributor, make_token):
    secret = make_token(contributor)
    other = make_token(contributor, name="autre")
    assert client.delete(TOKEN_URL, headers=bearer(secret)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200
    assert "token.revoked" in actions(contributor.organization_id)


def test_deactivated_user_and_role_change_apply_at_once(client, contributor, make_token):
    secret = make_token(contributor)
    contributor.role = "lecteur"
    db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(secret)).get_json()["role"] == "lecteur"
    contributor.active = False
    db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401


def test_token_only_from_the_authorization_header(client, contributor, make_token):
    secret = make_token(contributor)
    assert client.get(f"/api/v1/me?access_token={secret}").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Token {secret}"}).status_code == 401
    assert client.get("/api/v1/me", headers=bearer("cof_" + "A" * 43)).status_code == 401


def test_a_browser_cookie_does_not_authenticate_the_api(login_as, contributor):
    browser = login_as(contributor)
    assert browser.get("/").status_code == 200
    response = browser.get("/api/v1/me")
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers


def test_tokens_are_distinct_and_long(contributor, make_token):
    secrets = {make_token(contributor, name=f"t{i}") for i in range(20)}
    assert len(secrets) == 20
    assert all(len(s) - len("cof_") >= 43 for s in secrets)


def test_no_set_cookie_on_any_api_answer(client, contributor, make_token):
    secret = make_token(contributor)
    for response in (
        client.get("/api/v1/me", headers=bearer(secret)),
        client.get("/api/v1/armoires", headers=bearer(secret)),
        client.get("/api/v1/nope", headers=bearer(secret)),
        client.get("/api/v1/openapi.json"),
    ):
        assert "Set-Cookie" not in response.headers
        assert response.headers["Cache-Control"] == "no-store"
