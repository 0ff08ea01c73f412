"""Drag-and-drop upload in a real browser: one progress bar per file, a result line each."""

from __future__ import annotations

import pytest

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import armoires, demo, uploads
from portal.extensions import db
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

DROP_FILES = """
([names, sizes]) => {
  const transfer = new DataTransfer();
  names.forEach((name, i) => {
    const bytes = new Uint8Array(sizes[i]);
    for (let j = 0; j < bytes.length; j += 1) { bytes[j] = (j * 31 + i) % 251; }
    transfer.items.add(new File([bytes], name, { type: "application/octet-stream" }));
  });
  const zone = document.getElementById("upload-queue");
  zone.dispatchEvent(new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
}
"""


def test_drop_files_shows_progress_and_results(live_server, page, contributor):
    armoire = armoires.create_armoire(Actor(contributor.organization_id, contributor.id), "Armoire du navigateur")
    email = contributor.email
    db.session.commit()

    sign_in(page, live_server.url, email)
    page.goto(f"{live_server.url}/armoires/{armoire.id}")
    assert page.get_by_text("Ce dossier est vide.").is_visible()

    page.evaluate(DROP_FILES, [["rapport annuel é.bin", "note.txt"], [3 * 1024 * 1024 + 17, 2048]])

    items = page.locator("#upload-queue-list li")
    items.nth(1).wait_for()
    page.wait_for_selector("#upload-queue-list li.upload-done >> nth=1", timeout=20_000)
    for index in range(2):
        bar = items.nth(index).locator("progress")
        assert bar.get_attribute("value") == "100"
        assert items.nth(index).locator("a").inner_text().startswith("Ajouté")
    # The file list refreshes itself through htmx once the uploads are done.
    page.wait_for_selector("#file-list >> text=rapport annuel é.bin")
    db.session.rollback()  # end this test's read snapshot: the server committed meanwhile
    names = sorted(f.name for f in db.session.execute(db.select(File)).scalars())
    assert names == ["note.txt", "rapport annuel é.bin"]
    sizes = sorted(f.size for f in db.session.execute(db.select(File)).scalars())
    assert sizes == [2048, 3 * 1024 * 1024 + 17]
    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]


def test_a_pdf_preview_opens_in_the_browsers_viewer(live_server, page, contributor):
    """The preview response is sandboxed by its own CSP; the frame must not be, or Chromium
    refuses to run its PDF viewer and shows a broken-document icon instead."""
    actor = Actor(contributor.organization_id, contributor.id)
    armoire = armoires.create_armoire(actor, "Procès-verbaux")
    pdf = demo.demo_pdf("Assemblee generale")
    version = uploads.store_upload(actor, armoire, None, "PV.pdf", [pdf], len(pdf))
    email, file_id = contributor.email, version.file_id
    db.session.commit()

    sign_in(page, live_server.url, email)
    with page.expect_response(lambda r: "/apercu" in r.url) as preview:
        page.goto(f"{live_server.url}/fichiers/{file_id}")
    assert (preview.value.header_value("content-security-policy") or "").startswith("sandbox")
    frame = page.locator(".file-preview iframe")
    assert frame.get_attribute("sandbox") is None
    # Chromium's PDF viewer is an extension frame inside the preview frame; when the frame is
    # sandboxed it never appears (the broken-document page is shown instead).
    for _attempt in range(50):
        if any(f.url.startswith("chrome-extension://") and f.url.endswith("/index.html") for f in page.frames):
            break
        page.wait_for_timeout(200)
    else:
        pytest.fail(f"no PDF viewer in the preview frame: {[f.url for f in page.frames]}")
