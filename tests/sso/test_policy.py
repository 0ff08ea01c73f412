"""The organisation's SSO policy page and what it enforces: just-in-time members,
"SSO required" (web and API password logins refused except for admins), trusting the
provider's MFA only when the admin says so and the token says it happened."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.extensions import db
from portal.sso.models import SsoIdentity, SsoPolicy
from tests.auth.support import login, text
from tests.conftest import TEST_PASSWORD, csrf
from tests.sso.conftest import sso_sign_in


def _save(client, **fields):
    data = {"csrf_token": csrf(client, "/organisation/sso"), "default_role": "lecteur"}
    data.update(fields)
    return client.post("/organisation/sso", data=data)


def test_admin_sets_the_policy_and_it_is_journalled(admin_client, admin, providers):
    page = admin_client.get("/organisation/sso")
    assert page.status_code == 200 and 'value="alpha"' in text(page)
    response = _save(
        admin_client,
        allowed_providers=["alpha"],
        allowed_domains="Example.org\n@corp.example",
        jit_enabled="y",
        default_role="contributeur",
    )
    assert response.status_code in (302, 303), text(response)
    policy = db.session.execute(select(SsoPolicy)).scalar_one()
    assert policy.organization_id == admin.organization_id
    assert policy.domains == {"example.org", "corp.example"} and policy.providers == {"alpha"}
    assert policy.jit_enabled and policy.default_role == "contributeur" and not policy.sso_required
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "sso.policy_changed")).scalars()
    assert entry.organization_id == admin.organization_id


def test_bad_input_is_a_422_with_a_message(admin_client):
    response = _save(admin_client, allowed_domains="not a domain!", default_role="lecteur")
    assert response.status_code == 422 and "Domaine invalide" in text(response)
    assert _save(admin_client, allowed_providers=["ghost"]).status_code == 422
    assert _save(admin_client, default_role="admin").status_code == 422
    assert db.session.query(SsoPolicy).count() == 0


def test_only_admins_reach_the_policy(reader_client, contributor_client):
    assert reader_client.get("/organisation/sso").status_code == 403
    assert contributor_client.post("/organisation/sso", data={}).status_code in (400, 403)


def test_sso_required_refuses_password_logins_but_not_the_admins(client, app, make_org, make_user):
    org = make_org()
    db.session.add(SsoPolicy(organization_id=org.id, allowed_domains="example.org", sso_required=True))
    db.session.commit()
    member = make_user("contributeur", org=org, email="m@example.org")
    boss = make_user("admin", org=org, email="boss@example.org")
    response = login(client, member.email, TEST_PASSWORD)
    assert response.status_code == 403 and "exige la connexion par SSO" in text(response)
    assert client.get("/me").status_code in (302, 401)
    api = app.test_client()
    token = api.post("/api/v1/auth/token", json={"email": member.email, "password": TEST_PASSWORD})
    assert token.status_code == 403 and token.json["type"].endswith("/problems/sso-required")
    refusals = db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.login_failed")).scalars().all()
    assert [e.details["channel"] for e in refusals] == ["web", "api"]
    # The admins keep their password as the break-glass way in.
    assert login(app.test_client(), boss.email, TEST_PASSWORD).status_code in (302, 303)
    assert api.post("/api/v1/auth/token", json={"email": boss.email, "password": TEST_PASSWORD}).status_code == 201


def test_provider_mfa_counts_only_when_trusted_and_asserted(client, app, make_org, make_user, providers):
    org = make_org()
    policy = SsoPolicy(organization_id=org.id, allowed_domains="example.org")
    db.session.add(policy)
    member = make_user(
        "lecteur", org=org, email="t@example.org", two_factor_method="totp", totp_secret_encrypted="never-read-here"
    )
    db.session.add(
        SsoIdentity(
            organization_id=org.id, user_id=member.id, provider="alpha", issuer=providers["alpha"].base, subject="t"
        )
    )
    db.session.commit()
    claims = {"email": "t@example.org", "email_verified": True, "amr": ["pwd", "mfa"]}
    # Off by default: Coffre asks its own second factor even though the token says MFA.
    response = sso_sign_in(client, providers["alpha"], "t", claims)
    assert response.headers["Location"].endswith("/auth/2fa/verify")
    policy.trust_provider_mfa = True
    db.session.commit()
    fresh = app.test_client()
    response = sso_sign_in(fresh, providers["alpha"], "t", {**claims, "amr": ["pwd"]})
    assert response.headers["Location"].endswith("/auth/2fa/verify")  # trusted, but not asserted
    fresh = app.test_client()
    response = sso_sign_in(fresh, providers["alpha"], "t", claims)
    assert response.headers["Location"] == "/" or response.headers["Location"].endswith("localhost/")
    assert fresh.get("/me").status_code == 200
    entry = (
        db.session.execute(select(AuditEntry).where(AuditEntry.action == "sso.login").order_by(AuditEntry.id.desc()))
        .scalars()
        .first()
    )
    assert entry.details["amr"] == ["pwd", "mfa"]


def test_jit_respects_allowed_providers(client, make_org, providers):
    org = make_org()
    db.session.add(
        SsoPolicy(organization_id=org.id, allowed_domains="example.org", jit_enabled=True, allowed_providers="beta")
    )
    db.session.commit()
    response = sso_sign_in(client, providers["alpha"], "x", {"email": "x@example.org", "email_verified": True})
    assert response.status_code == 403
    assert db.session.query(User).count() == 0
