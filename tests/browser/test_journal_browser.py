"""The journal in Chromium: live filters over HTMX, the verification badge, no script injection."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from tests.audit.helpers import add_entries

pytestmark = pytest.mark.browser


def test_filters_apply_live_and_nothing_runs_from_labels(live_server, page, admin, contributor, org, login_as):
    add_entries(org, admin, 3, label="Facture-{n}.pdf")
    add_entries(org, contributor, 2, label="Devis-{n}.pdf", action="file.deleted")
    add_entries(org, contributor, 1, label='"><img src=x onerror=alert(1)><script>alert(2)</script>')
    cookie = login_as(admin).get_cookie("coffre_session").value
    db.session.rollback()  # on SQLite an open read would hold the write lock the server needs
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.context.add_cookies([{"name": "coffre_session", "value": cookie, "url": live_server.url}])

    page.goto(live_server.url + "/journal")
    assert page.locator(".journal-entry").count() == 6
    page.locator("#journal-verification .badge-ok").wait_for()

    page.fill("#filtre-q", "devis")
    page.wait_for_url("**/journal?*q=devis*")
    # Locator waits, not wait_for_function: the CSP (rightly) refuses evaluated strings.
    expect(page.locator(".journal-entry")).to_have_count(2)
    assert "a supprimé le fichier" in page.locator(".journal-entries").inner_text()

    page.fill("#filtre-q", "")
    page.select_option("select[name=action]", "file.added")
    expect(page.locator(".journal-entry")).to_have_count(4)
    assert "onerror=alert(1)" in page.locator(".journal-entries").inner_text()  # shown as text

    assert dialogs == []
    assert page.locator(".journal-entries img").count() == 0
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
