"""Paying a plan by mobile money in a real browser, against the FeexPay simulator, then the invoice."""

from __future__ import annotations

import re
import subprocess

import pytest

from portal.billing.models import Plan
from portal.billing.simulator import API_KEY, SHOP_ID, Simulator
from portal.extensions import db
from tests.billing.conftest import migration_plans
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def paying_server(live_server_factory):
    sim = Simulator(settle_after=2).start()
    server = live_server_factory(
        FEEXPAY_BASE_URL=sim.base_url, FEEXPAY_API_KEY=API_KEY, FEEXPAY_SHOP_ID=SHOP_ID, FEEXPAY_TIMEOUT=5
    )
    sim.notify_url = server.url + "/abonnement/feexpay/notification"
    with server.app.app_context():
        for row in migration_plans():
            db.session.add(Plan(**row))
        db.session.commit()
    yield server
    sim.stop()


def test_admin_pays_by_mobile_money_and_downloads_the_invoice(paying_server, page, admin, tmp_path):
    email = admin.email
    db.session.commit()
    sign_in(page, paying_server.url, email)
    page.goto(paying_server.url + "/abonnement")
    assert page.locator("#subscription-status").inner_text() == "Essai gratuit"
    page.locator("#plan-pro button").click()
    page.wait_for_selector("#pay-form")
    assert (
        "45\u202f000\u00a0FCFA HT + TVA 8\u202f100\u00a0FCFA = 53\u202f100\u00a0FCFA TTC"
        in page.locator("#amount-due").inner_text()
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "billing_admin_choose.png"), full_page=True)
    page.select_option("#network", "mtn")
    page.fill("#phone", "22997123456")
    page.locator("#pay-form button[type=submit]").click()
    page.wait_for_selector("#payment-state[data-status=PENDING]")
    page.screenshot(path=str(ARTIFACTS / "billing_admin_pending.png"), full_page=True)
    page.wait_for_selector("#payment-state[data-status=SUCCESSFUL]", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "billing_admin_paid.png"), full_page=True)
    with page.expect_download() as download_info:
        page.locator("#invoice-link").click()
    pdf = tmp_path / "facture.pdf"
    download_info.value.save_as(pdf)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", " ", text.replace("\u202f", " ").replace("\u00a0", " "))
    assert re.search(r"FAC-\d{4}-000001", flat)
    assert "45 000 FCFA" in flat and "8 100 FCFA" in flat and "53 100 FCFA" in flat and "TVA 18 %" in flat
    page.goto(paying_server.url + "/abonnement")
    assert page.locator("#subscription-status").inner_text() == "Actif"
    page.screenshot(path=str(ARTIFACTS / "billing_admin_active.png"), full_page=True)
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def test_a_reader_sees_no_billing(paying_server, page, reader):
    email = reader.email
    db.session.commit()
    sign_in(page, paying_server.url, email)
    assert page.get_by_role("link", name="Abonnement").count() == 0
    response = page.goto(paying_server.url + "/abonnement")
    assert response.status == 403
    page.screenshot(path=str(ARTIFACTS / "billing_reader_forbidden.png"), full_page=True)


def test_a_read_only_organisation_shows_its_state_and_pays_its_way_back(paying_server, page, admin):
    """The lifecycle as an admin sees it: the banner, the state on /abonnement, then paying."""
    from datetime import timedelta

    from portal.billing import lifecycle, services
    from portal.database import utcnow

    with paying_server.app.app_context():
        subscription = services.subscription_for(admin.organization_id)
        subscription.trial_ends_at = utcnow() - timedelta(days=8)
        db.session.commit()
        lifecycle.advance()
        db.session.commit()
    sign_in(page, paying_server.url, admin.email)
    page.goto(paying_server.url + "/armoires")
    banner = page.locator("#subscription-notice")
    assert banner.get_attribute("data-status") == "lecture_seule"
    assert "lecture seule" in banner.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "billing_read_only_banner.png"), full_page=True)
    banner.get_by_role("link", name="Ouvrir la page Abonnement").click()
    page.wait_for_url(re.compile(r".*/abonnement$"))
    assert page.locator("#subscription-status").inner_text() == "Lecture seule"
    assert page.locator("#subscription-state").is_visible()
    page.screenshot(path=str(ARTIFACTS / "billing_read_only_subscription.png"), full_page=True)
    page.locator("#plan-essentiel button").click()
    page.wait_for_selector("#pay-form")
    page.select_option("#network", "mtn")
    page.fill("#phone", "22997123456")
    page.locator("#pay-form button[type=submit]").click()
    page.wait_for_selector("#payment-state[data-status=SUCCESSFUL]", timeout=30_000)
    page.goto(paying_server.url + "/abonnement")
    assert page.locator("#subscription-status").inner_text() == "Actif"
    assert page.locator("#subscription-state").count() == 0
