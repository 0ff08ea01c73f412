"""Both dashboards in Chromium under the strict CSP: charts drawn, period switch over HTMX."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from portal.audit.context import Actor
from portal.extensions import db
from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser


def _activity(admin, contributor) -> None:
    from portal.documents.models import File
    from portal.documents.services import armoires, reading, uploads

    for name, owner, count in (("Comptabilité", contributor, 3), ("Ressources humaines", admin, 1)):
        armoire = armoires.create_armoire(Actor(admin.organization_id, admin.id), name)
        db.session.commit()
        for number in range(count):
            content = f"{name} {number}\n".encode() * (number + 1) * 300
            version = uploads.store_upload(
                Actor(owner.organization_id, owner.id), armoire, None, f"piece-{number}.txt", iter([content]), None
            )
            db.session.commit()
            file = db.session.get(File, version.file_id)
            reading.record_download(Actor(admin.organization_id, admin.id), file.id, file.name, 1, preview=False)
            db.session.commit()


def _open(page, live_server, client) -> None:
    cookie = client.get_cookie("coffre_session").value
    page.context.add_cookies([{"name": "coffre_session", "value": cookie, "url": live_server.url}])


def test_admin_dashboard_draws_its_charts_and_switches_period(live_server, page, admin, contributor, login_as):
    _activity(admin, contributor)
    client = login_as(admin)
    db.session.rollback()  # on SQLite an open read would hold the write lock the server needs
    _open(page, live_server, client)

    page.goto(live_server.url + "/dashboard/global")
    expect(page.locator("#tableau-de-bord canvas.chart[data-drawn='1']")).to_have_count(1)
    expect(page.locator(".chart-summary")).to_contain_text("dépôts : 4")
    page.locator(".period-switch a", has_text="7 jours").click()
    page.wait_for_url("**/dashboard/global?periode=7")
    expect(page.locator(".period-switch a[aria-current='true']")).to_have_text("7 jours")
    # The swapped-in section brought a new canvas: drawn again, without a page load.
    expect(page.locator("#tableau-de-bord canvas.chart[data-drawn='1']")).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-global-admin.png"), full_page=True)

    page.goto(live_server.url + f"/dashboard/utilisateur/{contributor.id}")
    expect(page.locator("#activite-membre canvas.chart[data-drawn='1']")).to_have_count(1)
    expect(page.locator(".chart-summary")).to_contain_text("Actions sur 30 jours : 3")
    page.screenshot(path=str(ARTIFACTS / "dashboard-member-by-admin.png"), full_page=True)
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def test_reader_sees_only_their_own_activity(live_server, page, admin, contributor, reader, login_as):
    _activity(admin, contributor)
    client = login_as(reader)
    db.session.rollback()
    _open(page, live_server, client)

    page.goto(live_server.url + "/")
    assert page.locator("nav a", has_text="Tableau de bord").count() == 0
    page.locator("summary", has_text=reader.name).click()
    page.locator("a", has_text="Mes statistiques").click()
    page.wait_for_url(f"**/dashboard/utilisateur/{reader.id}")
    # Nothing done yet: the summary says so and no empty chart is drawn.
    expect(page.locator(".chart-summary")).to_have_text("Aucune action sur 30 jours.")
    assert page.locator("canvas").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-member-reader.png"), full_page=True)
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
    response = page.goto(live_server.url + "/dashboard/global")
    assert response is not None and response.status == 403
    response = page.goto(live_server.url + f"/dashboard/utilisateur/{admin.id}")
    assert response is not None and response.status == 403
