"""The header's search box shows its whole placeholder at common widths, in both languages,
for the member with the most header items (an admin) and a contributor."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, sign_in
from tests.browser.test_admin_nav_browser import _nav_rows

pytestmark = pytest.mark.browser

# The placeholder's rendered width against the room inside the input (padding and the
# search icon excluded), in CSS pixels.
MEASURE = """() => {
    const input = document.querySelector('.header-search input');
    const style = getComputedStyle(input);
    const context = document.createElement('canvas').getContext('2d');
    context.font = style.font;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return {text: input.placeholder, needed: context.measureText(input.placeholder).width, room: room};
}"""


@pytest.mark.parametrize("width", [1280, 1024, 390])
@pytest.mark.parametrize("who", ["admin", "contributor"])
def test_the_search_placeholder_is_not_cut(live_server, browser, request, who, width):
    user = request.getfixturevalue(who)
    context = browser.new_context(locale="fr-FR", viewport={"width": width, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, live_server.url, user.email)
        for language in ("fr", "en"):
            page.goto(live_server.url + "/armoires")
            page.locator(f".lang-button[value={language}]").click()
            page.wait_for_load_state()
            measured = page.evaluate(MEASURE)
            page.locator(".site-header").screenshot(path=str(ARTIFACTS / f"header-search-{who}-{width}-{language}.png"))
            assert measured["needed"] <= measured["room"], (language, measured)
            if width >= 1280:
                assert _nav_rows(page) == 1
    finally:
        context.close()
