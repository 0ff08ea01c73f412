"""The armoire as a file manager in Chromium: layout per role, bulk move, ZIP, search, undo toast."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import armoires, folders, uploads
from portal.extensions import db
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


def _seed(user):
    actor = Actor(user.organization_id, user.id)
    armoire = armoires.create_armoire(actor, "Comptabilité 2026")
    factures = folders.create_folder(actor, armoire, None, "Factures")
    folders.create_folder(actor, armoire, factures, "Fournisseurs")
    archives = folders.create_folder(actor, armoire, None, "Archives")
    contents = {
        "Relevé bancaire janvier.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "budget.csv": "poste;montant\nloyer;450000\nélectricité;38000\n".encode(),
        "notes de réunion.md": "# Réunion\n- point 1\n".encode(),
        "photo reçu.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "Écriture.txt": b"bonjour\n",
    }
    for name, content in contents.items():
        uploads.store_upload(actor, armoire, None, name, iter([content]), len(content))
    db.session.commit()
    return armoire, archives, contents


@pytest.mark.parametrize("role", ["admin", "contributeur", "lecteur"])
def test_layout_per_role_and_on_a_phone(live_server, browser, make_user, org, admin, role):
    armoire, _archives, _contents = _seed(admin)
    user = admin if role == "admin" else make_user(role, org)
    email = user.email
    for name, viewport in (("bureau", {"width": 1280, "height": 900}), ("mobile", {"width": 390, "height": 844})):
        context = browser.new_context(locale="fr-FR", viewport=viewport)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message, errors=errors: message.type == "error" and errors.append(message.text))
        sign_in(page, live_server.url, email)
        page.goto(f"{live_server.url}/armoires/{armoire.id}")
        assert page.locator(".folder-tree >> text=Factures").is_visible()
        assert page.locator(".breadcrumb li").count() == 2
        rows = page.locator("#file-list tr.file-row")
        assert rows.count() == 5
        # Accent- and case-free order: "budget", "Écriture", "notes", "photo", "Relevé".
        names = [rows.nth(i).locator(".col-name a").inner_text() for i in range(5)]
        assert names == [
            "budget.csv",
            "Écriture.txt",
            "notes de réunion.md",
            "photo reçu.png",
            "Relevé bancaire janvier.pdf",
        ]
        writes = page.get_by_role("button", name="Créer le dossier").count()
        trash_buttons = page.locator("button:has-text('Mettre à la corbeille')").count()
        if role == "lecteur":
            assert writes == 0 and trash_buttons == 0
            assert page.locator("#bulk-destination").count() == 0
        else:
            assert writes == 1 and trash_buttons >= 1
        page.screenshot(path=str(ARTIFACTS / f"file-manager-{role}-{name}.png"), full_page=True)
        if role == "admin" and name == "bureau":
            # The README's picture (docs/screenshot.png is copied from it): the first screen.
            page.check("input[name=ids][aria-label='Sélectionner budget.csv']")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "file-manager-readme.png"))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"] + 1, f"{name}: the page scrolls sideways ({width} px)"
        assert not errors, errors
        context.close()


def test_bulk_move_zip_search_and_undo_toast(live_server, page, contributor):
    armoire, archives, contents = _seed(contributor)
    sign_in(page, live_server.url, contributor.email)
    page.goto(f"{live_server.url}/armoires/{armoire.id}")

    # ZIP of two selected files, streamed and decrypted on the fly.
    page.check("input[name=ids][aria-label='Sélectionner budget.csv']")
    page.check("input[name=ids][aria-label='Sélectionner Écriture.txt']")
    assert "2 sélectionné(s)" in page.locator(".bulk-count").inner_text()
    with page.expect_download() as info:
        page.get_by_role("button", name="Télécharger (ZIP)").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert sorted(archive.namelist()) == ["budget.csv", "Écriture.txt"]
    assert archive.read("budget.csv") == contents["budget.csv"]

    # Bulk move into "Archives" (the list is swapped in place, a toast confirms).
    page.select_option("#bulk-destination", label="Comptabilité 2026 / Archives")
    page.get_by_role("button", name="Déplacer").first.click()
    page.wait_for_selector(".toast >> text=2 fichiers déplacés")
    assert page.locator("#file-list tr.file-row").count() == 3
    db.session.rollback()
    moved = db.session.execute(db.select(File).where(File.folder_id == archives.id)).scalars().all()
    assert sorted(f.name for f in moved) == ["budget.csv", "Écriture.txt"]

    # Trash from a row's menu, then undo from the toast.
    row = page.locator("tr.file-row", has_text="photo reçu.png")
    row.locator("details.row-menu summary").click()
    row.get_by_role("button", name="Mettre à la corbeille").click()
    page.wait_for_selector(".toast >> text=1 fichier placé dans la corbeille")
    assert page.locator("#file-list >> text=photo reçu.png").count() == 0
    page.screenshot(path=str(ARTIFACTS / "file-manager-undo-toast.png"))
    page.locator(".toast").get_by_role("button", name="Annuler").click()
    page.wait_for_selector("#file-list >> text=photo reçu.png")
    page.wait_for_selector(".toast >> text=1 fichier restauré")
    db.session.rollback()
    photo = db.session.execute(db.select(File).where(File.name == "photo reçu.png")).scalar_one()
    assert photo.deleted_at is None

    # Global search from the header box: accents and case ignored, the path shown.
    page.fill(".header-search input[name=q]", "ECRITURE")
    page.press(".header-search input[name=q]", "Enter")
    page.wait_for_url(lambda url: "/recherche" in url)
    hit = page.locator("tr.search-hit")
    assert hit.count() == 1
    assert "Écriture.txt" in hit.inner_text() and "Comptabilité 2026 › Archives" in hit.inner_text()
    page.screenshot(path=str(ARTIFACTS / "file-manager-search.png"), full_page=True)
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
