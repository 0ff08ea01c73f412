"""Issue 12, points 1 and 3 in a real browser: a platform admin edits and creates plans; an
admin schedules a downgrade, sees its date, and cancels it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.billing import services
from portal.billing.models import Plan
from portal.database import utcnow
from portal.extensions import db
from portal.organizations.models import Organization
from tests.billing.conftest import migration_plans
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def server(live_server_factory):
    server = live_server_factory()
    with server.app.app_context():
        for row in migration_plans():
            db.session.add(Plan(**row))
        db.session.commit()
    return server


def test_a_platform_admin_edits_and_creates_plans(server, page, make_user, make_org):
    root = make_user("lecteur", org=make_org("Plateforme"), is_platform_admin=True)
    db.session.commit()
    sign_in(page, server.url, root.email)
    page.goto(server.url + "/dashboard/plateforme")
    page.locator("#plans-link").click()
    page.wait_for_selector("#plan-row-pro")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "plans_admin_list.png"), full_page=True)

    page.locator("#plan-row-pro").get_by_role("link", name="Modifier").click()
    page.wait_for_selector("#plan-form")
    page.get_by_label("Prix mensuel HT (XOF)").fill("0")
    page.get_by_role("button", name="Enregistrer").click()
    page.wait_for_selector("#plan-error[data-field=price_month_ht]")
    assert "supérieur à 0" in page.locator("#plan-error").inner_text()
    page.screenshot(path=str(ARTIFACTS / "plans_admin_refused.png"), full_page=True)
    page.get_by_label("Prix mensuel HT (XOF)").fill("50000")
    page.get_by_role("button", name="Enregistrer").click()
    page.wait_for_url(server.url + "/plateforme/formules")
    assert "50\u202f000" in page.locator("#plan-row-pro").inner_text()

    page.get_by_label("Code (unique, non modifiable)").fill("startup")
    page.get_by_label("Nom", exact=True).fill("Startup")
    page.get_by_label("Prix mensuel HT (XOF)").fill("8000")
    page.get_by_label("Prix annuel HT (XOF)").fill("80000")
    page.get_by_label("Quota de stockage (Mo)").fill("5120")
    page.get_by_label("Nombre de membres").fill("3")
    page.get_by_role("button", name="Créer la formule").click()
    page.wait_for_selector("#plan-row-startup")
    assert page.locator("#plans-admin").count() == 1  # the list was not nested into itself
    page.screenshot(path=str(ARTIFACTS / "plans_admin_created.png"), full_page=True)
    # The browser logs the refused save's 422 itself; nothing else may fail.
    errors = [e for e in page.console_errors if "status of 422" not in e]  # type: ignore[attr-defined]
    assert not errors, errors
    with server.app.app_context():
        plan = db.session.execute(select(Plan).where(Plan.code == "startup")).scalar_one()
        assert (plan.price_month_ht, plan.storage_quota_mb, plan.member_quota) == (8000, 5120, 3)


def test_an_admin_sees_a_scheduled_downgrade_and_cancels_it(server, page, admin):
    end = utcnow().replace(microsecond=0) + timedelta(days=12)
    with server.app.app_context():
        subscription = services.subscription_for(admin.organization_id)
        pro = db.session.execute(select(Plan).where(Plan.code == "pro")).scalar_one()
        subscription.plan_id, subscription.status, subscription.current_period_end = pro.id, "active", end
        db.session.execute(
            update(Organization)
            .where(Organization.id == admin.organization_id)
            .values(storage_quota_bytes=pro.storage_quota_mb << 20)
        )
        db.session.commit()
    email = admin.email
    db.session.commit()
    sign_in(page, server.url, email)
    page.goto(server.url + "/abonnement")
    page.locator("#plan-essentiel button").click()
    page.wait_for_selector("#scheduled-change")
    assert "passera à la formule Essentiel" in page.locator("#scheduled-change").inner_text()
    assert page.locator("#current-plan").inner_text() == "Pro"
    assert "Payer d'avance" in page.locator("#paiement").inner_text()
    page.screenshot(path=str(ARTIFACTS / "billing_downgrade_scheduled.png"), full_page=True)
    page.locator("#cancel-change").click()
    page.wait_for_selector("#scheduled-change", state="detached")
    assert page.locator("#current-plan").inner_text() == "Pro"
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
