"""Without JavaScript, the plain upload form asks about a taken name (Chromium, JS off)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import armoires, uploads
from portal.extensions import db
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def nojs_page(browser):
    context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    yield context.new_page()
    context.close()


def _names() -> list[str]:
    db.session.rollback()  # the server committed meanwhile
    return sorted(db.session.execute(select(File.name).where(File.deleted_at.is_(None))).scalars())


def test_the_plain_form_asks_then_keeps_both(live_server, nojs_page, contributor, tmp_path):
    page = nojs_page
    actor = Actor(contributor.organization_id, contributor.id)
    armoire = armoires.create_armoire(actor, "Courrier")
    uploads.store_upload(actor, armoire, None, "facture.pdf", iter([b"v1"]), 2)
    db.session.commit()
    armoire_id = armoire.id
    sample = tmp_path / "facture.pdf"
    sample.write_bytes(b"v2")
    sign_in(page, live_server.url, contributor.email)
    page.goto(f"{live_server.url}/armoires/{armoire_id}")
    assert page.get_by_label("me demander").is_checked()
    page.set_input_files("#upload-queue-input", str(sample))
    page.locator("#upload-queue-form").get_by_role("button", name="Envoyer").click()
    page.wait_for_selector("#upload-conflict")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "nojs-upload-conflict.png"), full_page=True)
    assert "existe déjà ici" in page.locator("h1").inner_text()
    assert "facture (2).pdf" in page.locator(".conflict-names").inner_text()
    assert "409" not in page.locator("main").inner_text()
    assert _names() == ["facture.pdf"]
    page.set_input_files("#upload-conflict-input", str(sample))
    page.get_by_role("button", name="Garder les deux").click()
    page.wait_for_url(f"{live_server.url}/armoires/{armoire_id}")
    assert _names() == ["facture (2).pdf", "facture.pdf"]
