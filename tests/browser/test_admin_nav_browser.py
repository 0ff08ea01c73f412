"""The header for an admin: the admin pages are grouped in one "Administration" menu, so the
navigation stays on one row at 1280 px; the menu works with the keyboard and without JavaScript."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser

ADMIN_PAGES = ["Tableau de bord", "Journal", "Membres", "Organisation", "Abonnement", "Sauvegardes", "Conformité"]


def _nav_rows(page) -> int:
    """Distinct rows of the header's top-level items (their vertical centres, to the pixel)."""
    return page.evaluate(
        """() => new Set([...document.querySelectorAll('.site-header nav > ul > li')]
            .filter((li) => li.offsetParent !== null)
            .map((li) => { const r = li.getBoundingClientRect(); return Math.round((r.top + r.bottom) / 2); })).size"""
    )


@pytest.mark.parametrize("width", [1280, 390])
def test_admin_pages_are_grouped_in_one_menu(live_server, browser, admin, width):
    context = browser.new_context(locale="fr-FR", viewport={"width": width, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    try:
        sign_in(page, live_server.url, admin.email)
        page.goto(live_server.url + "/armoires")
        nav = page.locator(".site-header nav")
        menu = nav.locator("details.admin-menu")
        assert menu.count() == 1
        for label in ADMIN_PAGES:
            # Not among the header's top-level links any more, but in the menu.
            assert nav.locator("> ul > li > a", has_text=label).count() == 0, label
            assert menu.locator("a", has_text=label).count() == 1, label
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"admin-nav-after-{width}.png"))
        if width == 1280:
            assert _nav_rows(page) == 1
        width_now = page.evaluate("document.documentElement.scrollWidth")
        assert width_now <= width + 1, f"the page scrolls sideways ({width_now} px)"

        # Keyboard: focus the menu, open it with Enter, reach a link, Escape closes it.
        menu.locator("summary").focus()
        page.keyboard.press("Enter")
        assert menu.get_attribute("open") is not None
        page.screenshot(path=str(ARTIFACTS / f"admin-nav-open-{width}.png"))
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('details.admin-menu') !== null")
        page.keyboard.press("Escape")
        assert menu.get_attribute("open") is None
        assert page.evaluate("document.activeElement.tagName") == "SUMMARY"

        # The current page marks the menu itself.
        menu.locator("summary").click()
        menu.get_by_role("link", name="Journal").click()
        page.wait_for_url(lambda url: "/journal" in url)
        assert page.locator("details.admin-menu > summary[aria-current=page]").count() == 1
        assert not errors, errors
    finally:
        context.close()


def test_admin_menu_without_javascript_and_in_english(live_server, browser, admin, contributor):
    context = browser.new_context(locale="fr-FR", java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, admin.email)
        page.goto(live_server.url + "/armoires")
        page.locator("form.language-switch button[value=en]").click()
        menu = page.locator("details.admin-menu")
        menu.locator("summary", has_text="Administration").click()
        menu.get_by_role("link", name="Members").click()
        page.wait_for_url(lambda url: "/membres" in url or "/users" in url)
    finally:
        context.close()
    # A member without admin rights has no such menu.
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    try:
        sign_in(page, live_server.url, contributor.email)
        page.goto(live_server.url + "/armoires")
        assert page.locator("details.admin-menu").count() == 0
    finally:
        context.close()
