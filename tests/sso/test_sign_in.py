"""SSO sign-in through a real OpenID provider on loopback: the redirect dance, the
session it opens, linking by proof (never by e-mail) and the journal."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.auth.models import User, UserSession
from portal.extensions import db
from portal.sso.models import SsoIdentity, SsoPolicy
from tests.auth.support import enable_totp, login, text, totp_now
from tests.conftest import TEST_PASSWORD
from tests.sso.conftest import callback_path, sso_sign_in, start_flow


def _policy(org, **fields):
    fields.setdefault("allowed_domains", "example.org")
    fields.setdefault("jit_enabled", True)
    policy = SsoPolicy(organization_id=org.id, **fields)
    db.session.add(policy)
    db.session.commit()
    return policy


def _entries(action: str) -> list[AuditEntry]:
    return list(db.session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


def _signed_in(client) -> bool:
    response = client.get("/me")
    return response.status_code == 200


def test_login_page_shows_one_button_per_provider(client):
    page = text(client.get("/auth/login"))
    assert 'data-sso="alpha"' in page and 'data-sso="beta"' in page


def test_no_button_without_providers(app_factory):
    app = app_factory()
    page = app.test_client().get("/auth/login").get_data(as_text=True)
    assert "data-sso=" not in page


def test_start_uses_pkce_s256_state_and_nonce(client):
    url = start_flow(client, "alpha")
    assert "code_challenge_method=S256" in url and "code_challenge=" in url
    assert "state=" in url and "nonce=" in url


def test_new_member_from_allowed_domain_is_created_with_default_role(client, make_org, providers):
    org = make_org("Cabinet")
    _policy(org)
    claims = {"email": "awa@example.org", "email_verified": True, "name": "Awa Diallo"}
    response = sso_sign_in(client, providers["alpha"], "alpha-awa", claims)
    assert response.status_code == 302, text(response)
    assert _signed_in(client)
    user = db.session.execute(select(User).where(User.email == "awa@example.org")).scalar_one()
    assert user.organization_id == org.id and user.role == "lecteur" and user.password_hash is None
    identity = db.session.execute(select(SsoIdentity)).scalar_one()
    assert (identity.issuer, identity.subject) == (providers["alpha"].base, "alpha-awa")
    # The same server-side session as a password login, with its limits and revocation.
    assert db.session.execute(select(UserSession).where(UserSession.user_id == user.id)).scalar_one().revoked_at is None
    [created] = _entries("sso.member_created")
    [signed_in] = _entries("sso.login")
    assert created.organization_id == org.id
    assert signed_in.details["provider"] == "alpha" and signed_in.details["sub"] == "alpha-awa"
    assert signed_in.details["outcome"] == "signed_in"
    # Signing in again reuses the identity; no second member.
    client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    assert sso_sign_in(client, providers["alpha"], "alpha-awa", claims).status_code == 302
    assert db.session.query(User).count() == 1


def _csrf(client):
    from tests.conftest import csrf

    return csrf(client, "/me")


def test_sso_login_replaces_a_planted_session_token(client, make_org, providers):
    org = make_org()
    _policy(org)
    with client.session_transaction() as session:
        session["sid"] = "planted-by-an-attacker"
    sso_sign_in(client, providers["alpha"], "fresh", {"email": "fresh@example.org", "email_verified": True})
    with client.session_transaction() as session:
        assert session["sid"] != "planted-by-an-attacker"
    assert _signed_in(client)


def test_existing_member_links_only_after_password_and_totp(client, make_user, make_org, providers, clock):
    org = make_org()
    _policy(org, jit_enabled=False)
    member = make_user("contributeur", org=org, email="binta@example.org")
    assert login(client, member.email, TEST_PASSWORD).status_code in (302, 303)
    secret, _codes = enable_totp(client, clock)
    client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    clock.advance(seconds=31)

    claims = {"email": "binta@example.org", "email_verified": True}
    response = sso_sign_in(client, providers["alpha"], "alpha-binta", claims)
    # The e-mail alone does not sign in nor link: the member is asked for their own proof.
    assert response.status_code == 302 and response.headers["Location"].endswith("/auth/login")
    assert not _signed_in(client)
    assert db.session.query(SsoIdentity).count() == 0

    response = login(client, member.email, TEST_PASSWORD)
    assert response.headers["Location"].endswith("/auth/2fa/verify")
    assert db.session.query(SsoIdentity).count() == 0  # the password alone is not enough
    page = text(client.get("/auth/2fa/verify"))
    from tests.conftest import csrf_token_from

    response = client.post(
        "/auth/2fa/verify", data={"csrf_token": csrf_token_from(page), "code": totp_now(secret, clock)}
    )
    assert response.status_code in (302, 303)
    identity = db.session.execute(select(SsoIdentity)).scalar_one()
    assert identity.user_id == member.id and identity.subject == "alpha-binta"
    assert len(_entries("sso.linked")) == 1
    assert "<td>Alpha</td>" in text(client.get("/me"))

    # Next time the provider signs the member in, and Coffre still asks its own TOTP.
    client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    response = sso_sign_in(client, providers["alpha"], "alpha-binta", claims)
    assert response.headers["Location"].endswith("/auth/2fa/verify")
    assert not _signed_in(client)
    clock.advance(seconds=31)
    page = text(client.get("/auth/2fa/verify"))
    response = client.post(
        "/auth/2fa/verify", data={"csrf_token": csrf_token_from(page), "code": totp_now(secret, clock)}
    )
    assert response.status_code in (302, 303) and _signed_in(client)


def test_same_email_from_the_other_provider_is_not_merged(client, make_user, make_org, providers):
    org = make_org()
    _policy(org)
    member = make_user("lecteur", org=org, email="chloe@example.org")
    db.session.add(
        SsoIdentity(
            organization_id=org.id,
            user_id=member.id,
            provider="alpha",
            issuer=providers["alpha"].base,
            subject="alpha-chloe",
            email=member.email,
        )
    )
    db.session.commit()
    response = sso_sign_in(
        client, providers["beta"], "beta-chloe", {"email": "chloe@example.org", "email_verified": True}
    )
    assert response.headers["Location"].endswith("/auth/login")
    assert not _signed_in(client)
    assert db.session.query(SsoIdentity).count() == 1
    # The link waits for proof from the member; a wrong password links nothing.
    login(client, member.email, "wrong password entirely")
    assert db.session.query(SsoIdentity).count() == 1


def test_unlink_on_me_but_not_the_last_way_in(client, make_org, make_user, providers, login_as):
    org = make_org()
    _policy(org)
    sso_sign_in(client, providers["alpha"], "only-way", {"email": "only@example.org", "email_verified": True})
    identity = db.session.execute(select(SsoIdentity)).scalar_one()
    response = client.post(f"/me/sso/{identity.id}/unlink", data={"csrf_token": _csrf(client)})
    assert response.status_code in (302, 303)
    assert db.session.query(SsoIdentity).count() == 1  # no password: it is the only way in

    member = make_user(org=org)
    db.session.add(
        SsoIdentity(
            organization_id=org.id, user_id=member.id, provider="beta", issuer=providers["beta"].base, subject="beta-m"
        )
    )
    db.session.commit()
    other = login_as(member)
    mine = db.session.execute(select(SsoIdentity).where(SsoIdentity.user_id == member.id)).scalar_one()
    # Someone else's identity is not found.
    assert other.post(f"/me/sso/{identity.id}/unlink", data={"csrf_token": _csrf(other)}).status_code == 404
    assert other.post(f"/me/sso/{mine.id}/unlink", data={"csrf_token": _csrf(other)}).status_code in (302, 303)
    assert db.session.query(SsoIdentity).count() == 1
    assert len(_entries("sso.unlinked")) == 1


def test_callback_path_helper_targets_other_provider():
    assert callback_path("http://localhost/auth/sso/beta/callback?code=x&state=y", as_provider="alpha") == (
        "/auth/sso/alpha/callback?code=x&state=y"
    )
