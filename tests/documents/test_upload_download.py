from __future__ import annotations

import hashlib
import os

from portal.audit.models import AuditEntry
from portal.documents.models import File, FileVersion
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import blob_files, last_file, multipart, post_multipart, upload


def actions() -> list[str]:
    return [e.action for e in db.session.execute(db.select(AuditEntry).order_by(AuditEntry.id)).scalars()]


def test_upload_then_download_roundtrip(contributor_client, armoire, storage_dir):
    content = os.urandom(3 * (1 << 20) + 123)
    response = upload(contributor_client, armoire.id, "Relevé bancaire 2026.pdf", content)
    assert response.status_code == 201, response.get_data(as_text=True)
    file = last_file()
    assert file.name == "Relevé bancaire 2026.pdf"
    version = db.session.get(FileVersion, file.current_version_id)
    assert (version.number, version.size) == (1, len(content))
    assert version.sha256 == hashlib.sha256(content).hexdigest()
    assert version.mime_type == "application/octet-stream"
    assert "file.added" in actions()

    download = contributor_client.get(f"/fichiers/{file.id}/telecharger")
    assert download.status_code == 200
    assert download.data == content
    assert download.headers["Content-Disposition"] == (
        "attachment; filename=\"Releve bancaire 2026.pdf\"; filename*=UTF-8''Relev%C3%A9%20bancaire%202026.pdf"
    )
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"].startswith("sandbox")
    assert download.headers["Cache-Control"] == "no-store"
    assert actions()[-1] == "file.downloaded"


def test_no_plaintext_under_storage(contributor_client, armoire, storage_dir):
    marker = b"CONFIDENTIEL-" + os.urandom(8).hex().encode()
    content = (marker + b" texte en clair ") * 5000
    assert upload(contributor_client, armoire.id, "secret.txt", content).status_code == 201
    everything = b"".join(p.read_bytes() for p in storage_dir.rglob("*") if p.is_file())
    assert everything, "the blob must be somewhere under the storage directory"
    assert marker not in everything
    assert content[1000:1064] not in everything


def test_mime_type_comes_from_content(contributor_client, armoire):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    assert upload(contributor_client, armoire.id, "rapport.pdf", png).status_code == 201
    assert last_file().mime_type == "image/png"
    html = b"<html><script>alert(1)</script></html>"
    assert upload(contributor_client, armoire.id, "faux.pdf", html).status_code == 201
    file = last_file()
    assert file.mime_type == "text/plain"
    response = contributor_client.get(f"/fichiers/{file.id}/apercu")
    assert response.status_code == 415


def test_zero_byte_file(contributor_client, armoire):
    assert upload(contributor_client, armoire.id, "vide.txt", b"").status_code == 201
    file = last_file()
    assert file.size == 0
    response = contributor_client.get(f"/fichiers/{file.id}/telecharger")
    assert response.status_code == 200 and response.data == b""


def test_hostile_and_long_names_are_sanitised(contributor_client, armoire, storage_dir):
    long_name = "é" * 300 + ".docx"
    cases = {
        "../../etc/passwd": "passwd",
        "..\\..\\x.txt": "x.txt",
        "a\x00b\x1f\x7fc\t.txt": "abc .txt",  # a tab separates, like a space
        long_name: "é" * 250 + ".docx",
        '"><img src=x onerror=alert(1)>.txt': '"><img src=x onerror=alert(1)>.txt',
    }
    for raw, expected in cases.items():
        response = upload(contributor_client, armoire.id, raw, b"contenu")
        assert response.status_code == 201, raw
        file = last_file()
        assert file.name == expected
        assert len(file.name) <= 255
        disposition = contributor_client.get(f"/fichiers/{file.id}/telecharger").headers["Content-Disposition"]
        assert "\r" not in disposition and "\n" not in disposition
    page = contributor_client.get(f"/armoires/{armoire.id}").get_data(as_text=True)
    assert "<img src=x" not in page
    for path in storage_dir.rglob("*"):
        assert "passwd" not in path.name and "img" not in path.name


def test_large_ranges_decrypted_ahead_are_exact(contributor_client, armoire):
    """Ranges over two segments go through the decrypt-ahead worker (issue 10 D13): unaligned
    starts and ends, a range ending before the last segment (which is still authenticated
    first), a suffix and an open-ended range each give exactly their bytes."""
    segment = 1 << 20
    content = os.urandom(7 * segment + 4321)
    upload(contributor_client, armoire.id, "archive.bin", content)
    file = last_file()
    size = len(content)
    for header, start, end in (
        ("bytes=12345-4012344", 12345, 4012345),
        (f"bytes={segment}-{4 * segment - 1}", segment, 4 * segment),
        ("bytes=-3500000", size - 3500000, size),
        (f"bytes={2 * segment + 1}-", 2 * segment + 1, size),
    ):
        response = contributor_client.get(f"/fichiers/{file.id}/telecharger", headers={"Range": header})
        assert response.status_code == 206, header
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.data == content[start:end], header


def test_range_requests_on_preview(contributor_client, armoire):
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(2 * (1 << 20))
    upload(contributor_client, armoire.id, "image.png", png)
    file = last_file()
    response = contributor_client.get(f"/fichiers/{file.id}/apercu", headers={"Range": "bytes=1048570-1048585"})
    assert response.status_code == 206
    assert response.data == png[1048570:1048586]
    assert response.headers["Content-Range"] == f"bytes 1048570-1048585/{len(png)}"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert response.headers["Content-Type"] == "image/png"
    bad = contributor_client.get(f"/fichiers/{file.id}/apercu", headers={"Range": f"bytes={len(png) + 10}-"})
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == f"bytes */{len(png)}"


def test_size_limit_early_and_mid_stream(app_factory, make_user, storage_dir):
    app = app_factory(MAX_UPLOAD_BYTES=100_000)
    from portal.audit.context import Actor
    from portal.auth.sessions import open_session_for
    from portal.documents.services import armoires

    with app.app_context():
        user = make_user("contributeur")
        armoire = armoires.create_armoire(Actor(user.organization_id, user.id), "A")
        db.session.commit()
        client = app.test_client()
        with client.session_transaction() as session:
            open_session_for(user, session)
        db.session.commit()
        response = upload(client, armoire.id, "gros.bin", os.urandom(300_000))
        assert response.status_code == 413
        assert "taille maximale" in response.get_data(as_text=True)
        # Within the Content-Length allowance for multipart framing: caught while streaming.
        response = upload(client, armoire.id, "g.bin", os.urandom(150_000))
        assert response.status_code == 413
        assert db.session.execute(db.select(File)).first() is None
        assert db.session.execute(db.select(FileVersion)).first() is None
        assert blob_files(storage_dir) == []
        assert not any((storage_dir / "tmp").iterdir())


def test_quota_refuses_with_413(contributor_client, contributor, armoire, storage_dir):
    contributor.organization.storage_quota_bytes = 50_000
    db.session.commit()
    assert upload(contributor_client, armoire.id, "a.bin", os.urandom(30_000)).status_code == 201
    response = upload(contributor_client, armoire.id, "b.bin", os.urandom(30_000))
    assert response.status_code == 413
    assert "quota" in response.get_data(as_text=True)
    assert db.session.execute(db.select(db.func.count(File.id))).scalar_one() == 1
    assert len(blob_files(storage_dir)) == 1


def test_missing_csrf_writes_nothing(contributor_client, armoire, storage_dir):
    response = upload(contributor_client, armoire.id, "x.txt", b"abc", token="forged")
    assert response.status_code == 400
    assert db.session.execute(db.select(File)).first() is None
    assert blob_files(storage_dir) == []


def test_interrupted_upload_leaves_nothing(contributor_client, armoire, storage_dir):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    boundary = "b0und"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="coupé.bin"\r\n\r\n'
    ).encode() + os.urandom(2 * (1 << 20))
    # Content-Length promises more than is sent: werkzeug sees the client go away.
    import io

    response = contributor_client.post(
        f"/armoires/{armoire.id}/televerser",
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={boundary}",
        headers={"Content-Length": str(len(body) + 5000)},
    )
    assert response.status_code == 400
    assert db.session.execute(db.select(File)).first() is None
    assert db.session.execute(db.select(FileVersion)).first() is None
    assert blob_files(storage_dir) == []
    assert "file.added" not in actions()


def test_no_js_form_uploads_several_files_and_redirects(contributor_client, armoire):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    body = multipart([("csrf_token", token)], [("file", "un.txt", b"un"), ("file", "deux.txt", b"deux")])
    response = post_multipart(contributor_client, f"/armoires/{armoire.id}/televerser", body)
    assert response.status_code == 303
    names = sorted(f.name for f in db.session.execute(db.select(File)).scalars())
    assert names == ["deux.txt", "un.txt"]
