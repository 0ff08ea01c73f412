"""Legal hold in a real browser: place it on a file, see the 423 refusal naming it, lift it, delete."""

from __future__ import annotations

import pytest

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import armoires, uploads
from portal.extensions import db
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_place_hold_refused_delete_then_lift(live_server, page, admin):
    actor = Actor(admin.organization_id, admin.id)
    armoire = armoires.create_armoire(actor, "Contentieux")
    version = uploads.store_upload(actor, armoire, None, "contrat.txt", iter([b"contrat de 2026\n"]), 16)
    email = admin.email
    db.session.commit()
    file_id = version.file_id
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in(page, live_server.url, email)

    page.goto(f"{live_server.url}/fichiers/{file_id}")
    page.locator("summary", has_text="Poser un verrouillage légal").click()
    page.locator("#hold-form").wait_for(state="visible")
    page.locator("#hold-form").get_by_label("Motif").fill("Litige fournisseur")
    page.locator("#hold-form").get_by_label("Référence (n° de dossier)").fill("RG 26/0042")
    page.locator("#hold-form").get_by_role("button", name="Verrouiller").click()
    page.wait_for_selector(".hold-list >> text=RG 26/0042")

    page.get_by_role("button", name="Mettre à la corbeille").click()
    message = page.get_by_text("est sous verrouillage légal (référence RG 26/0042")
    message.wait_for()
    assert message.is_visible()
    page.screenshot(path="test-artifacts/compliance-423.png", full_page=True)
    db.session.rollback()
    assert db.session.get(File, file_id).deleted_at is None

    page.goto(f"{live_server.url}/fichiers/{file_id}")
    page.locator(".hold-list").get_by_label("Motif de la levée").fill("Affaire classée")
    page.get_by_role("button", name="Lever le verrouillage").click()
    page.wait_for_selector("text=Verrouillage RG 26/0042 levé.")
    assert page.locator(".hold-list").count() == 0

    page.get_by_role("button", name="Mettre à la corbeille").click()
    page.wait_for_url(lambda url: f"/fichiers/{file_id}" not in url)
    db.session.rollback()
    assert db.session.get(File, file_id).deleted_at is not None
    # The refused deletion's own 423 is the only error the console may show.
    unexpected = [e for e in page.console_errors if "423" not in e]  # type: ignore[attr-defined]
    assert not unexpected, unexpected


def test_a_granted_admin_trashes_past_a_gouvernance_rule_from_the_423_page(live_server, page, admin):
    from portal.compliance import grants, rules

    actor = Actor(admin.organization_id, admin.id)
    armoire = armoires.create_armoire(actor, "Archives RH")
    version = uploads.store_upload(actor, armoire, None, "fiche.txt", iter([b"fiche de paie\n"]), 14)
    file = db.session.get(File, version.file_id)
    rules.set_rule(actor, "file", file, duration_days=3650, mode="gouvernance", counted_from="upload")
    grants.set_bypass(actor, admin, True)
    email = admin.email
    db.session.commit()
    file_id = file.id
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server.url, email)

    page.goto(f"{live_server.url}/fichiers/{file_id}")
    page.get_by_role("button", name="Mettre à la corbeille").click()
    page.locator("#bypass-form").wait_for()
    page.screenshot(path="test-artifacts/compliance-423-bypass.png", full_page=True)
    assert "mode gouvernance" in page.locator("#error-panel").inner_text()
    page.get_by_label("Motif (consigné dans le journal)").fill("Doublon déposé par erreur")
    page.get_by_role("button", name="Mettre à la corbeille quand même").click()
    page.wait_for_url(f"{live_server.url}/armoires/{armoire.id}")
    page.locator(".toast", has_text="« fiche.txt » a été placé dans la corbeille.").wait_for()
    db.session.rollback()
    assert db.session.get(File, file_id).deleted_at is not None
