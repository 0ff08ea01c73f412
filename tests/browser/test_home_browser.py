"""The home page in a real browser: language switch, no external requests, no CSP errors."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser


def test_switching_language_changes_the_page_and_persists(live_server, page):
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(urlsplit(request.url).netloc))

    page.goto(live_server.url + "/")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("heading", level=1).inner_text().startswith("Les documents de votre organisation")

    page.get_by_role("button", name="EN").click()
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Your organisation's documents, kept safe"

    page.goto(live_server.url + "/auth/login")  # the choice survives navigation
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"

    assert origins == {urlsplit(live_server.url).netloc}, "a page loaded something from another origin"
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load under the CSP"
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
    assert page.evaluate("window.localStorage.length") == 0
