"""The list's row dialogs (rename, move, new version) and the single-file toasts, in Chromium."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.audit.context import Actor
from portal.documents.models import File, FileVersion
from portal.documents.services import armoires, folders, uploads
from portal.extensions import db
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser


def _seed(user):
    actor = Actor(user.organization_id, user.id)
    armoire = armoires.create_armoire(actor, "Courrier")
    archives = folders.create_folder(actor, armoire, None, "Archives")
    for name, content in (("budget.csv", b"poste;montant\n"), ("notes.md", b"# notes\n")):
        uploads.store_upload(actor, armoire, None, name, iter([content]), len(content))
    db.session.commit()
    return armoire.id, archives.id


def _file(name: str) -> File:
    db.session.rollback()  # the server committed meanwhile
    return db.session.execute(select(File).where(File.name == name)).scalar_one()


def _open(page, name: str, action: str):
    row = page.locator("tr.file-row", has_text=name)
    row.locator("details.row-menu summary").click()
    row.get_by_role("link", name=action).click()
    dialog = page.locator("#fm-dialog dialog[open]")
    dialog.wait_for()
    return dialog


def _focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_rename_move_and_new_version_in_dialogs_over_the_list(live_server, page, contributor):
    armoire_id, archives_id = _seed(contributor)
    sign_in(page, live_server.url, contributor.email)
    page.goto(f"{live_server.url}/armoires/{armoire_id}?tri=-name")
    page.evaluate("window.notReloaded = true")

    # Rename: focus goes into the dialog; a taken name (409) and an empty one (422) are
    # explained there; the right name updates the row in place with a toast.
    dialog = _open(page, "budget.csv", "Renommer")
    assert _focused_id(page) == "rename-name"
    page.fill("#rename-name", "notes.md")
    dialog.get_by_role("button", name="Renommer").click()
    taken = "Un fichier porte déjà ce nom dans ce dossier."
    page.wait_for_selector(f"#fm-dialog dialog[open] .dialog-error >> text={taken}")
    assert _focused_id(page) == "rename-name"
    ARTIFACTS.mkdir(exist_ok=True)
    # caret="initial": hiding the caret leaves style="" on inputs, which htmx then copies (a CSP report).
    page.screenshot(path=str(ARTIFACTS / "file-dialog-rename-taken.png"), caret="initial")
    page.fill("#rename-name", " ... ")
    page.locator("#fm-dialog").get_by_role("button", name="Renommer").click()
    page.wait_for_selector("#fm-dialog .dialog-error >> text=Le nom est obligatoire.")
    page.fill("#rename-name", "budget 2026.csv")
    page.locator("#fm-dialog").get_by_role("button", name="Renommer").click()
    page.wait_for_selector(".toast >> text=Fichier renommé en « budget 2026.csv ».")
    assert page.locator("#fm-dialog dialog").count() == 0
    assert page.locator("#file-list tr.file-row", has_text="budget 2026.csv").count() == 1
    assert page.locator("#file-list th.col-name").get_attribute("aria-sort") == "descending"
    assert _file("budget 2026.csv").folder_id is None

    # Escape closes the dialog and gives the focus back to the row's menu.
    _open(page, "notes.md", "Renommer")
    page.keyboard.press("Escape")
    page.wait_for_selector("#fm-dialog dialog", state="detached")
    assert page.evaluate("document.activeElement.closest('tr') && document.activeElement.closest('tr').dataset.fileId")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"

    # Move: the row leaves the list; the file is in Archives.
    dialog = _open(page, "notes.md", "Déplacer")
    assert _focused_id(page) == "move-destination"
    page.select_option("#move-destination", label="Courrier / Archives")
    dialog.get_by_role("button", name="Déplacer").click()
    page.wait_for_selector(".toast >> text=Fichier déplacé vers « Courrier / Archives ».")
    assert page.locator("#file-list tr.file-row", has_text="notes.md").count() == 0
    assert _file("notes.md").folder_id == archives_id

    # New version, sent from the dialog (multipart through htmx).
    dialog = _open(page, "budget 2026.csv", "Nouvelle version")
    page.set_input_files("#version-file", files=[{"name": "b.csv", "mimeType": "text/csv", "buffer": b"v2\n"}])
    dialog.get_by_role("button", name="Envoyer une nouvelle version").click()
    page.wait_for_selector(".toast >> text=Version 2 ajoutée.")
    file_id = _file("budget 2026.csv").id
    numbers = db.session.execute(select(FileVersion.number).where(FileVersion.file_id == file_id)).scalars()
    assert sorted(numbers) == [1, 2]

    assert page.evaluate("window.notReloaded") is True
    assert not _unexpected(page.console_errors), page.console_errors  # type: ignore[attr-defined]


def _seen(page, text: str) -> int:
    """How many elements showing ``text`` take more than a pixel on screen."""
    return page.evaluate(
        """text => [...document.querySelectorAll("#flashes .flash, .toast span")].filter(node => {
            const box = node.getBoundingClientRect();
            return node.textContent.trim() === text && box.width > 1 && box.height > 1;
        }).length""",
        text,
    )


def _unexpected(errors: list[str]) -> list[str]:
    """Console errors other than the refused renames' own 409 and 422 answers."""
    return [e for e in errors if not any(code in e for code in ("409", "422"))]


def test_single_file_actions_answer_with_toasts(live_server, page, contributor):
    armoire_id, _archives_id = _seed(contributor)
    budget = _file("budget.csv")
    uploads.add_version(Actor(contributor.organization_id, contributor.id), budget, "budget.csv", [b"v2"], 2)
    db.session.commit()
    file_id = budget.id
    sign_in(page, live_server.url, contributor.email)

    # File page: rename and version restore swap the details in place with a toast.
    page.goto(f"{live_server.url}/fichiers/{file_id}")
    page.evaluate("window.notReloaded = true")
    page.locator("#renommer summary").click()
    page.fill("#renommer input[name=name]", "budget final.csv")
    page.locator("#renommer").get_by_role("button", name="Renommer").click()
    page.wait_for_selector(".toast >> text=Fichier renommé en « budget final.csv ».")
    assert page.locator("#file-details h1").inner_text() == "budget final.csv"
    page.get_by_role("button", name="Restaurer cette version").click()
    page.wait_for_selector(".toast >> text=La version 1 a été restaurée comme version 3.")
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#flashes .flash").count() == 0

    # Trash from the file page: back in the folder, a toast with an undo.
    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Mettre à la corbeille").click()
    page.wait_for_url(f"{live_server.url}/armoires/{armoire_id}")
    toast = page.locator(".toast", has_text="« budget final.csv » a été placé dans la corbeille.")
    toast.wait_for()
    # One message in sight, not a banner and a toast saying the same (the flash stays for
    # screen readers, visually hidden).
    page.screenshot(path=str(ARTIFACTS / "trash-one-message.png"))
    assert _seen(page, "« budget final.csv » a été placé dans la corbeille.") == 1
    toast.get_by_role("button", name="Annuler").click()
    page.wait_for_selector(".toast >> text=1 fichier restauré.")
    page.wait_for_selector("#file-list >> text=budget final.csv")
    assert _file("budget final.csv").deleted_at is None

    # The trash page's restore: the list is swapped, a toast confirms.
    row = page.locator("tr.file-row", has_text="notes.md")
    row.locator("details.row-menu summary").click()
    row.get_by_role("button", name="Mettre à la corbeille").click()
    page.wait_for_selector(".toast >> text=1 fichier placé dans la corbeille.")
    page.goto(f"{live_server.url}/corbeille")
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Restaurer").click()
    page.wait_for_selector(".toast >> text=« notes.md » a été restauré.")
    assert page.locator("#trash-list >> text=La corbeille est vide.").count() == 1
    assert page.evaluate("window.notReloaded") is True
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def test_without_javascript_the_forms_still_post_and_flash(live_server, browser, contributor):
    armoire_id, _archives_id = _seed(contributor)
    file_id = _file("budget.csv").id
    context = browser.new_context(locale="fr-FR", java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, contributor.email)
        page.goto(f"{live_server.url}/armoires/{armoire_id}")
        # The row menu's "Renommer" is a link to the file page's section.
        row = page.locator("tr.file-row", has_text="budget.csv")
        row.locator("details.row-menu summary").click()
        row.get_by_role("link", name="Renommer").click()
        page.wait_for_url(f"{live_server.url}/fichiers/{file_id}#renommer")
        page.locator("#renommer summary").click()
        page.fill("#renommer input[name=name]", "notes.md")
        page.locator("#renommer").get_by_role("button", name="Renommer").click()
        assert "Un fichier porte déjà ce nom dans ce dossier." in page.content()
        page.go_back()
        page.locator("#renommer summary").click()
        page.fill("#renommer input[name=name]", "budget 2.csv")
        page.locator("#renommer").get_by_role("button", name="Renommer").click()
        page.wait_for_selector("#flashes >> text=Fichier renommé en « budget 2.csv ».")
        page.once("dialog", lambda confirm: confirm.accept())
        page.get_by_role("button", name="Mettre à la corbeille").click()
        page.wait_for_selector("#flashes >> text=« budget 2.csv » a été placé dans la corbeille.")
        assert page.url == f"{live_server.url}/armoires/{armoire_id}"
    finally:
        context.close()


def test_dialogs_in_english(live_server, browser, contributor):
    armoire_id, _archives_id = _seed(contributor)
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    try:
        sign_in(page, live_server.url, contributor.email)
        page.goto(f"{live_server.url}/armoires/{armoire_id}")
        page.locator("form.language-switch button[value=en]").click()
        page.wait_for_load_state()
        row = page.locator("tr.file-row", has_text="budget.csv")
        row.locator("details.row-menu summary").click()
        row.get_by_role("link", name="Rename").click()
        dialog = page.locator("#fm-dialog dialog[open]")
        dialog.wait_for()
        page.fill("#rename-name", "notes.md")
        dialog.get_by_role("button", name="Rename").click()
        page.wait_for_selector("#fm-dialog .dialog-error >> text=A file with this name already exists in this folder.")
    finally:
        context.close()
