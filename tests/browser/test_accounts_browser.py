"""Register, enable TOTP from the secret shown on the page, log out, log back in with a code."""

from __future__ import annotations

import re

import pyotp
import pytest

from tests.auth.support import Clock

pytestmark = pytest.mark.browser


def test_register_enable_totp_logout_login(live_server_factory, page):
    clock = Clock()  # the server's clock: the second code comes from a later step, without sleeping
    server = live_server_factory(COFFRE_CLOCK=clock)
    page.set_default_timeout(10_000)
    base = server.url

    page.goto(base + "/auth/register")
    page.get_by_label("Nom de l'organisation").fill("Cabinet Navigateur")
    page.get_by_label("Votre nom").fill("Aïssatou Ba")
    page.get_by_label("Adresse e-mail").fill("aissatou@navigateur.sn")
    page.get_by_label("Mot de passe").fill("une phrase pour le navigateur")
    page.get_by_role("button", name="Créer l'organisation").click()
    page.get_by_text("Vérifiez votre messagerie").wait_for()

    # Nothing exists until the link sent to the address is opened (the dev outbox here).
    from portal.mail import read_outbox

    with server.app.app_context():
        mail = next(m for m in read_outbox() if m["to"] == "aissatou@navigateur.sn")
    link = re.search(r"https?://\S+/auth/register/\S+", mail["text"]).group(0)
    page.goto(base + re.sub(r"^https?://[^/]+", "", link))
    page.get_by_role("button", name="Confirmer mon adresse et créer l'espace").click()

    # The new organisation requires 2FA: the member lands on enrolment.
    page.wait_for_url(base + "/auth/2fa/enable")
    assert page.locator("#totp-method svg").count() == 1
    secret = page.locator("#totp-secret").inner_text().strip()
    page.locator("#totp-method input[name=code]").fill(pyotp.TOTP(secret).at(clock()))
    page.get_by_role("button", name="Activer avec l'application").click()
    page.wait_for_selector("#recovery-codes")
    assert page.locator("#recovery-codes li").count() == 10
    page.get_by_role("button", name="J'ai conservé mes codes, continuer").click()
    page.wait_for_url(base + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "Bonjour Aïssatou Ba"

    page.locator("details.user-menu summary").click()
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url(base + "/auth/login")

    page.get_by_label("Adresse e-mail").fill("aissatou@navigateur.sn")
    page.get_by_label("Mot de passe").fill("une phrase pour le navigateur")
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(base + "/auth/2fa/verify")
    clock.advance(seconds=30)
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(clock()))
    page.get_by_role("button", name="Vérifier").click()
    page.wait_for_url(base + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "Bonjour Aïssatou Ba"
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
    assert page.evaluate("window.localStorage.length") == 0
