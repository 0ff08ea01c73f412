"""Backups in a real browser: start one, watch it finish, restore a file, see the new version."""

from __future__ import annotations

import pytest

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import armoires, uploads
from portal.extensions import db
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


def test_admin_backs_up_and_restores_a_file(live_server, page, admin):
    actor = Actor(admin.organization_id, admin.id)
    armoire = armoires.create_armoire(actor, "Comptabilité")
    db.session.commit()
    version = uploads.store_upload(actor, armoire, None, "bilan.txt", iter([b"bilan valide\n"]), 13)
    db.session.commit()
    file_id, email = version.file_id, admin.email

    sign_in(page, live_server.url, email)
    page.locator("details.admin-menu summary").click()  # the header's Administration menu
    page.get_by_role("link", name="Sauvegardes").click()
    page.wait_for_url("**/sauvegardes")
    page.screenshot(path=str(ARTIFACTS / "backups-01-empty.png"), full_page=True)
    page.get_by_role("button", name="Lancer une sauvegarde").click()
    # The list polls itself while the backup runs, and stops once it is done.
    page.wait_for_selector("#backup-list >> text=Réussie", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "backups-02-done.png"), full_page=True)

    # Someone overwrites the file after the backup.
    db.session.rollback()
    uploads.add_version(actor, db.session.get(File, file_id), None, iter([b"erreur\n"]), 7)
    db.session.commit()

    page.locator("#backup-list a").first.click()
    # The page shows the armoires; opening one fetches its content (HTMX).
    page.locator(".backup-tree summary", has_text="Comptabilité").click()
    page.wait_for_selector("text=bilan.txt")
    page.screenshot(path=str(ARTIFACTS / "backups-03-detail.png"), full_page=True)
    page.get_by_role("button", name="Restaurer ce fichier").click()
    page.wait_for_selector("text=Confirmer la restauration")
    assert page.get_by_text("bilan.txt — deviendra une nouvelle version").is_visible()
    page.screenshot(path=str(ARTIFACTS / "backups-04-confirm.png"), full_page=True)
    page.get_by_role("button", name="Restaurer", exact=True).click()
    page.wait_for_selector("#restore-progress >> text=Réussie", timeout=20_000)
    assert page.get_by_text("Restaurés : 1").is_visible()
    page.screenshot(path=str(ARTIFACTS / "backups-05-restored.png"), full_page=True)

    page.goto(f"{live_server.url}/fichiers/{file_id}/versions")
    page.wait_for_selector("text=Restauration depuis la sauvegarde")
    page.screenshot(path=str(ARTIFACTS / "backups-06-history.png"), full_page=True)
    db.session.rollback()
    file = db.session.get(File, file_id)
    assert file.current_version.number == 3 and file.current_version.restored_from_version == 1
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def test_reader_sees_no_backups(live_server, page, reader):
    email = reader.email
    sign_in(page, live_server.url, email)
    assert page.get_by_role("link", name="Sauvegardes").count() == 0
    response = page.goto(live_server.url + "/sauvegardes")
    assert response is not None and response.status == 403
    page.screenshot(path=str(ARTIFACTS / "backups-07-reader-403.png"), full_page=True)
