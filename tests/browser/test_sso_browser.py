"""End-to-end SSO in Chromium against a real OpenID provider on loopback: a new member of
an organisation that allows example.org signs in, lands with the lecteur role and sees
the identity on /me; the admin sets the policy page. No SMTP configured."""

from __future__ import annotations

import pytest

from portal.extensions import db
from tests.browser.conftest import ARTIFACTS
from tests.sso.conftest import provider_config, providers  # noqa: F401

pytestmark = pytest.mark.browser


def test_sso_new_member_and_admin_policy(live_server_factory, page, providers, browser):  # noqa: F811
    from tests.conftest import TEST_PASSWORD

    server = live_server_factory(COFFRE_SSO_PROVIDERS=provider_config(providers))
    page.set_default_timeout(10_000)
    base = server.url
    alpha = providers["alpha"]
    alpha.set_user("nafi", {"email": "nafi@example.org", "email_verified": True, "name": "Nafi Sarr"})
    with server.app.app_context():
        from portal.auth.models import User
        from portal.organizations.models import Organization
        from portal.security.passwords import hash_password
        from portal.sso.models import SsoPolicy

        org = Organization(name="Cabinet SSO", require_2fa=False)
        db.session.add(org)
        db.session.flush()
        db.session.add(SsoPolicy(organization_id=org.id, allowed_domains="example.org", jit_enabled=True))
        db.session.add(
            User(
                organization_id=org.id,
                email="admin@example.org",
                name="Admin",
                role="admin",
                password_hash=hash_password(TEST_PASSWORD),
            )
        )
        db.session.commit()

    page.goto(base + "/auth/login")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sso_login_page.png"), full_page=True)
    page.get_by_role("button", name="Se connecter avec Alpha").click()
    page.locator('input[name="sub"]').fill("nafi")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(base + "/")
    page.goto(base + "/me")
    assert page.get_by_text("nafi@example.org").first.is_visible()
    assert page.locator("#sso-identities").get_by_text("Alpha", exact=True).is_visible()
    page.screenshot(path=str(ARTIFACTS / "sso_lecteur_me.png"), full_page=True)
    with server.app.app_context():
        from sqlalchemy import select

        from portal.auth.models import User

        assert db.session.execute(select(User.role).where(User.email == "nafi@example.org")).scalar_one() == "lecteur"
    refused = page.goto(base + "/organisation/sso")
    assert refused.status == 403  # a lecteur does not reach the policy
    page.screenshot(path=str(ARTIFACTS / "sso_lecteur_policy_refused.png"), full_page=True)
    assert page.locator("#sso-policy-form").count() == 0

    admin_context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900})
    admin_page = admin_context.new_page()
    admin_page.set_default_timeout(10_000)
    admin_page.goto(base + "/auth/login")
    admin_page.get_by_label("Adresse e-mail").fill("admin@example.org")
    admin_page.get_by_label("Mot de passe").fill(TEST_PASSWORD)
    admin_page.get_by_role("button", name="Se connecter", exact=True).click()
    admin_page.wait_for_url(lambda url: "/auth/login" not in url)
    admin_page.goto(base + "/users")
    admin_page.get_by_role("link", name="Connexion par SSO (Google, Microsoft…)").click()
    admin_page.get_by_label("Alpha").check()
    admin_page.get_by_label("SSO obligatoire (sauf pour les administrateurs)").check()
    admin_page.get_by_role("button", name="Enregistrer").click()
    admin_page.locator("#flashes").get_by_text("Politique SSO enregistrée.").wait_for()
    admin_page.screenshot(path=str(ARTIFACTS / "sso_admin_policy.png"), full_page=True)
    admin_context.close()
