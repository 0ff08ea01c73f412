"""Text previews: first MiB, escaped, sandboxed; other types keep their rules."""

from __future__ import annotations

from portal.audit.models import AuditEntry
from portal.documents.services import names
from portal.extensions import db
from tests.documents.conftest import last_file, upload


def test_text_preview_is_escaped_and_sandboxed(admin_client, armoire):
    content = "# Titre\n<script>alert(1)</script>\nÉté;été\n".encode()
    assert upload(admin_client, armoire.id, "notes.md", content).status_code == 201
    file = last_file()
    page = admin_client.get(f"/fichiers/{file.id}").get_data(as_text=True)
    assert f'<iframe sandbox src="/fichiers/{file.id}/apercu"' in page
    response = admin_client.get(f"/fichiers/{file.id}/apercu")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    body = response.get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>" not in body
    assert "Été;été" in body
    entry = db.session.execute(db.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).scalar_one()
    assert entry.action == "file.viewed"  # a consultation, not a download


def test_text_preview_stops_at_one_mebibyte(admin_client, armoire):
    # "é" is two bytes: the limit falls inside one, which is dropped rather than garbled.
    content = b"a" + "é".encode() * (names.TEXT_PREVIEW_BYTES // 2 + 10)
    assert upload(admin_client, armoire.id, "long.txt", content).status_code == 201
    body = admin_client.get(f"/fichiers/{last_file().id}/apercu").get_data(as_text=True)
    assert "premier Mio" in body
    text = body.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert text == "a" + "é" * ((names.TEXT_PREVIEW_BYTES - 1) // 2)
    assert "\ufffd" not in text


def test_binary_and_other_extensions_get_no_text_preview(admin_client, armoire):
    assert upload(admin_client, armoire.id, "script.sh", b"echo bonjour\n").status_code == 201
    assert admin_client.get(f"/fichiers/{last_file().id}/apercu").status_code == 415
    assert names.is_text_previewable("text/plain", "data.CSV")
    assert names.is_text_previewable("text/plain", "x.json")
    assert not names.is_text_previewable("application/octet-stream", "x.txt")
