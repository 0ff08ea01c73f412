"""htmx under the strict CSP: 4xx validation fragments are swapped in, nothing is stored."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_422_validation_fragment_is_swapped_in_place(live_server, page, make_user):
    user = make_user("lecteur", email="lea@example.test")
    page.goto(live_server.url + "/auth/login")
    page.get_by_label("Adresse e-mail").fill(user.email)
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    with page.expect_response(lambda response: response.url.endswith("/auth/login")) as answer:
        page.get_by_role("button", name="Se connecter").click()
    assert answer.value.status == 422
    assert answer.value.request.headers.get("hx-request") == "true"
    expect(page.locator("#login-form .field-errors")).to_contain_text("incorrect")
    # Swapped into the same page: one form, still the same document (no full navigation).
    assert page.locator("form#login-form").count() == 1
    assert page.evaluate("window.localStorage.length") == 0
    csp_errors = [m for m in page.console_errors if "Content Security Policy" in m or "Refused" in m]  # type: ignore[attr-defined]
    assert csp_errors == []
