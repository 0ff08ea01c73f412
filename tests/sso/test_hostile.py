"""Hostile SSO callbacks, each refused with no session and a journal entry (or, when
nothing points to an organisation, a structured line in the server log)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.auth.models import UserSession
from portal.extensions import db
from portal.sso import providers as sso_providers
from portal.sso.models import SsoIdentity, SsoPolicy
from tests.auth.support import text
from tests.sso.conftest import OTHER_KEY, callback_path, sso_sign_in, start_flow

CLAIMS = {"email": "eve@example.org", "email_verified": True}


@pytest.fixture
def org(make_org):
    org = make_org("Cabinet")
    db.session.add(SsoPolicy(organization_id=org.id, allowed_domains="example.org", jit_enabled=True))
    db.session.commit()
    return org


def _refusals(org_id: int | None = None) -> list[AuditEntry]:
    statement = select(AuditEntry).where(AuditEntry.action == "sso.login_failed")
    if org_id is not None:
        statement = statement.where(AuditEntry.organization_id == org_id)
    return list(db.session.execute(statement).scalars())


def _assert_no_session(client) -> None:
    assert db.session.query(UserSession).count() == 0
    assert client.get("/me").status_code in (302, 401)


@pytest.mark.parametrize(
    ("tamper", "reason", "status"),
    [
        ("nonce", "wrong_nonce", 400),
        ("aud", "wrong_audience", 400),
        ("expired", "expired", 400),
        ("issuer", "wrong_issuer", 400),
        ("none", "bad_algorithm", 400),
        ("hs256", "bad_algorithm", 400),
        ("foreign_key", "unknown_key", 400),
        ("foreign_key_same_kid", "bad_signature", 400),
        ('claims:{"azp": "another-client"}', "wrong_audience", 400),
        ('claims:{"iat": 9999999999}', "bad_iat", 400),
    ],
)
def test_forged_or_wrong_id_tokens_are_refused(client, org, providers, tamper, reason, status):
    response = sso_sign_in(client, providers["alpha"], "eve", CLAIMS, tamper=tamper)
    assert response.status_code == status, text(response)
    assert "Traceback" not in text(response)
    _assert_no_session(client)
    assert db.session.query(SsoIdentity).count() == 0
    [entry] = _refusals(org.id)
    assert entry.details["reason"] == reason and entry.details["provider"] == "alpha"


def test_wrong_state_is_refused_and_logged(client, org, providers, caplog):
    providers["alpha"].set_user("eve", CLAIMS)
    location = providers["alpha"].authorize(start_flow(client, "alpha"), "eve")
    path = callback_path(location)
    forged = path.replace("state=", "state=forged", 1)
    with caplog.at_level(logging.WARNING, logger="coffre.security"):
        response = client.get(forged)
    assert response.status_code == 400
    _assert_no_session(client)
    assert any("security.sso_refused" in r.getMessage() and '"bad_state"' in r.getMessage() for r in caplog.records)


def test_another_browsers_state_is_refused(client, app, org, providers):
    providers["alpha"].set_user("eve", CLAIMS)
    location = providers["alpha"].authorize(start_flow(client, "alpha"), "eve")
    victim = app.test_client()  # a cross-site GET to the callback in another browser
    assert victim.get(callback_path(location)).status_code == 400
    _assert_no_session(victim)


def test_replayed_authorization_code_is_refused(client, app, org, providers, caplog):
    providers["alpha"].set_user("eve", CLAIMS)
    location = providers["alpha"].authorize(start_flow(client, "alpha"), "eve")
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    saved = client.get_cookie(cookie_name)
    assert client.get(callback_path(location)).status_code in (302, 303)
    db.session.execute(db.delete(UserSession))
    db.session.commit()
    # A copy of the cookie from before the callback still holds the state: the provider
    # refuses the code the second time.
    replay = app.test_client()
    replay.set_cookie(cookie_name, saved.value, domain=saved.domain or "localhost")
    with caplog.at_level(logging.WARNING, logger="coffre.security"):
        response = replay.get(callback_path(location))
    assert response.status_code == 400
    _assert_no_session(replay)
    assert any('"code_refused"' in r.getMessage() for r in caplog.records)


def test_mix_up_code_from_issuer_b_at_issuer_a_callback(client, org, providers):
    providers["beta"].set_user("eve", CLAIMS)
    location = providers["beta"].authorize(start_flow(client, "beta"), "eve")
    # beta's response replayed at alpha's callback: alpha never issued that state.
    assert client.get(callback_path(location, as_provider="alpha")).status_code == 400
    _assert_no_session(client)
    # beta's code grafted onto a flow started with alpha: alpha refuses a code it never made.
    providers["alpha"].set_user("eve", CLAIMS)
    alpha_location = providers["alpha"].authorize(start_flow(client, "alpha"), "eve")
    beta_location = providers["beta"].authorize(start_flow(client, "beta"), "eve")
    alpha_state = alpha_location.split("state=")[1].split("&")[0]
    beta_code = beta_location.split("code=")[1].split("&")[0]
    response = client.get(f"/auth/sso/alpha/callback?code={beta_code}&state={alpha_state}")
    assert response.status_code == 400
    # An RFC 9207 "iss" naming the other issuer is refused before any code exchange.
    response = client.get(f"/auth/sso/beta/callback?code={beta_code}&state=x&iss={providers['alpha'].base}")
    assert response.status_code == 400
    _assert_no_session(client)


def test_domain_the_organisation_does_not_allow(client, org, providers, caplog):
    with caplog.at_level(logging.WARNING, logger="coffre.security"):
        response = sso_sign_in(
            client, providers["alpha"], "mallory", {"email": "m@elsewhere.test", "email_verified": True}
        )
    assert response.status_code == 403
    assert "Aucune organisation" in text(response)
    _assert_no_session(client)
    assert any('"unknown_domain"' in r.getMessage() for r in caplog.records)


def test_unverified_email_is_not_created(client, org, providers):
    response = sso_sign_in(client, providers["alpha"], "eve", {"email": "eve@example.org", "email_verified": False})
    assert response.status_code == 403
    _assert_no_session(client)
    [entry] = _refusals(org.id)
    assert entry.details["reason"] == "email_unverified"


def test_deactivated_member_is_refused(client, org, providers, make_user):
    member = make_user(org=org, email="gone@example.org", active=False)
    db.session.add(
        SsoIdentity(
            organization_id=org.id, user_id=member.id, provider="alpha", issuer=providers["alpha"].base, subject="gone"
        )
    )
    db.session.commit()
    response = sso_sign_in(client, providers["alpha"], "gone", {"email": "gone@example.org", "email_verified": True})
    assert response.status_code == 403
    _assert_no_session(client)
    [entry] = _refusals(org.id)
    assert entry.details["reason"] == "inactive" and entry.target_id == member.id


def test_domain_allowed_by_two_organisations_is_ambiguous(client, org, make_org, providers):
    other = make_org("Autre")
    db.session.add(SsoPolicy(organization_id=other.id, allowed_domains="example.org", jit_enabled=True))
    db.session.commit()
    response = sso_sign_in(client, providers["alpha"], "eve", CLAIMS)
    assert response.status_code == 403
    _assert_no_session(client)
    assert {e.organization_id for e in _refusals()} == {org.id, other.id}


def test_unknown_kid_refetches_the_jwks_once(client, app, org, providers):
    provider = sso_providers.get("alpha")
    stale = {"keys": [OTHER_KEY.as_dict(private=False)]}
    sso_providers.client(provider).server_metadata["jwks"] = stale
    response = sso_sign_in(client, providers["alpha"], "eve", CLAIMS)
    assert response.status_code in (302, 303), text(response)
    assert sso_providers.client(provider).server_metadata["jwks"] != stale


def test_unknown_provider_name_is_404(client):
    assert client.get("/auth/sso/nope/callback?code=x&state=y").status_code == 404


def test_start_needs_csrf(client):
    assert client.post("/auth/sso/alpha/start").status_code == 400
