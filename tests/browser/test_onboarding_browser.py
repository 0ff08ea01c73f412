"""A new organisation onboards a colleague with no SMTP server: the admin invites and copies
the link, the colleague accepts and is made to enrol (TOTP, or e-mail code shown as a
development notice), right away or after the re-authentication window, and reaches /me."""

from __future__ import annotations

import re

import pyotp
import pytest

from portal.extensions import db
from tests.auth.support import Clock
from tests.browser.conftest import ARTIFACTS
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.browser

ADMIN_EMAIL = "fatou@cabinet-onboard.sn"
INVITEE_EMAIL = "moussa@cabinet-onboard.sn"
INVITEE_PASSWORD = "une phrase pour le nouveau collègue"


def _admin_with_totp(app) -> str:
    """An organisation as registration makes it (2FA required) and its enrolled admin."""
    from portal.auth.models import User
    from portal.organizations.models import Organization
    from portal.security import totp
    from portal.security.passwords import hash_password

    secret = totp.new_secret()
    with app.app_context():
        org = Organization(name="Cabinet Onboard", require_2fa=True)
        db.session.add(org)
        db.session.flush()
        admin = User(
            organization_id=org.id,
            email=ADMIN_EMAIL,
            name="Fatou Admin",
            role="admin",
            password_hash=hash_password(TEST_PASSWORD),
            two_factor_method="totp",
        )
        db.session.add(admin)
        db.session.flush()
        admin.totp_secret_encrypted = totp.encrypt_secret(secret, admin.id)
        db.session.commit()
    return secret


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _admin_invites(browser, base: str, secret: str, clock: Clock, tag: str) -> str:
    context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    try:
        page.goto(base + "/auth/login")
        page.get_by_label("Adresse e-mail").fill(ADMIN_EMAIL)
        page.get_by_label("Mot de passe").fill(TEST_PASSWORD)
        page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url(base + "/auth/2fa/verify")
        page.get_by_label("Code").fill(pyotp.TOTP(secret).at(clock()))
        page.get_by_role("button", name="Vérifier").click()
        page.wait_for_url(base + "/")

        page.goto(base + "/users")
        form = page.locator("#invite-form")
        form.get_by_label("Adresse e-mail").fill(INVITEE_EMAIL)
        form.get_by_label("Nom").fill("Moussa Collègue")
        form.get_by_role("button", name="Envoyer l'invitation").click()
        page.wait_for_selector("text=Aucun serveur d'e-mail n'est configuré")
        row = page.locator("tr", has_text=INVITEE_EMAIL)
        copy = row.get_by_role("button", name="Copier le lien")
        link = copy.get_attribute("data-copy-text")
        # The link points at this server, whatever port it listens on (no COFFRE_BASE_URL).
        assert link and link.startswith(base + "/auth/invitation/"), link
        copy.click()
        row.get_by_role("button", name="Lien copié").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == link
        _shot(page, f"onboarding-{tag}-1-members")

        row.get_by_role("link", name="Voir le message").click()
        page.wait_for_selector("text=Aucun serveur d'e-mail n'est configuré : voici le message et son lien.")
        assert link in page.locator(".mail-body").first.inner_text()
        _shot(page, f"onboarding-{tag}-2-outbox")
        assert not errors, errors
    finally:
        context.close()
    return link


@pytest.mark.parametrize("late", [False, True], ids=["right-away", "after-reauth-window"])
@pytest.mark.parametrize("factor", ["totp", "email"])
def test_invited_member_onboards_and_enrols(live_server_factory, browser, page, factor, late):
    clock = Clock()
    server = live_server_factory(COFFRE_CLOCK=clock, SESSION_TOUCH_SECONDS=0)
    base = server.url
    tag = f"{factor}-{'late' if late else 'now'}"
    link = _admin_invites(browser, base, _admin_with_totp(server.app), clock, tag)

    page.set_default_timeout(10_000)
    page.goto(link)
    page.get_by_label("Votre nom").fill("Moussa Collègue")
    page.get_by_label("Nouveau mot de passe").fill(INVITEE_PASSWORD)
    page.get_by_label("Confirmez le mot de passe").fill(INVITEE_PASSWORD)
    page.get_by_role("button", name="Activer mon compte").click()
    page.wait_for_url(base + "/auth/2fa/enable")
    assert "exige la double authentification" in page.content()

    if late:
        clock.advance(minutes=11)  # past COFFRE_REAUTH_MINUTES: binding a factor asks again
        page.reload()
        page.wait_for_selector("#reauth-box")
        page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
        page.get_by_role("button", name="Confirmer").click()
        page.wait_for_selector("text=Mot de passe ou code incorrect.")
        page.get_by_label("Mot de passe").fill(INVITEE_PASSWORD)
        page.get_by_role("button", name="Confirmer").click()
        page.wait_for_url(base + "/auth/2fa/enable")
        page.wait_for_selector("#totp-method")

    if factor == "totp":
        secret = page.locator("#totp-secret").inner_text().strip()
        page.locator("#totp-method input[name=code]").fill(pyotp.TOTP(secret).at(clock()))
        page.get_by_role("button", name="Activer avec l'application").click()
    else:
        page.get_by_role("button", name=f"Envoyer un code à {INVITEE_EMAIL}").click()
        notice = page.locator("#dev-email-code")
        notice.wait_for()
        code = re.search(r"\d{6}", notice.inner_text()).group(0)
        _shot(page, f"onboarding-{tag}-3-email-code")
        page.locator("#email-method input[name=code]").fill(code)
        page.get_by_role("button", name="Activer le code par e-mail").click()
    page.wait_for_selector("#recovery-codes")
    assert page.locator("#recovery-codes li").count() == 10
    page.get_by_role("button", name="J'ai conservé mes codes, continuer").click()
    page.wait_for_url(base + "/")

    page.goto(base + "/me")
    assert page.url == base + "/me"
    assert "Moussa Collègue" in page.content()
    # Chromium logs every 4xx page as a console error: the re-authentication form is a 401
    # (reload, then the wrong password). Anything else (a CSP refusal, a script error) fails.
    expected = ["status of 401"] * (2 if late else 0)
    errors = page.console_errors  # type: ignore[attr-defined]
    assert [e for e in errors if "status of 401" not in e] == [] and len(errors) == len(expected), errors
