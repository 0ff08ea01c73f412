"""The reference uploader, run for real against a live portal (and broken servers) on loopback."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import sys

import pytest
from sqlalchemy import select

from portal.extensions import db
from tests.desktop.conftest import ROOT
from tests.desktop.servers import NeverAnswers, ServerError, tampering_proxy

spec = importlib.util.spec_from_file_location("coffre_desktop", ROOT / "desktop" / "coffre_desktop.py")
uploader = importlib.util.module_from_spec(spec)
sys.modules["coffre_desktop"] = uploader  # dataclasses look their module up
spec.loader.exec_module(uploader)


def token_for(user) -> str:
    from portal.api import services
    from portal.audit.context import Actor

    _row, secret = services.create_token(user, Actor(user.organization_id, user.id), name="bureau")
    db.session.commit()
    return secret


def write_config(server: str, secret: str) -> None:
    uploader.save_config(server, secret, None)


@pytest.fixture
def document(tmp_path):
    path = tmp_path / "outbox" / "facture.pdf"
    path.parent.mkdir()
    path.write_bytes(b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024 + 17))
    return path


def stored_versions():
    from portal.documents.models import FileVersion

    db.session.rollback()
    return list(db.session.execute(select(FileVersion)).scalars())


def run(*argv: str) -> int:
    return uploader.main(["--timeout", "20", *argv])


def test_success_deletes_the_local_file(live_portal, contributor, armoire, document, capsys):
    expected = hashlib.sha256(document.read_bytes()).hexdigest()
    write_config(live_portal.url, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 0
    assert not document.exists()
    assert list(document.parent.iterdir()) == []  # the renamed copy is gone too
    [version] = stored_versions()
    assert version.sha256 == expected
    assert "supprimé localement" in capsys.readouterr().out


def test_without_the_flag_the_file_is_kept(live_portal, contributor, armoire, document):
    write_config(live_portal.url, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id)) == 0
    assert document.exists() and len(stored_versions()) == 1


def test_mismatching_receipt_keeps_the_file(live_portal, loopback, contributor, armoire, document, capsys):
    proxy = loopback(tampering_proxy(live_portal.url, lambda receipt: receipt | {"sha256": "0" * 64}))
    write_config(proxy, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 1
    assert document.exists()
    assert "incohérent" in capsys.readouterr().err
    assert len(stored_versions()) == 1  # the portal did store it; only the local deletion is refused


def test_wrong_size_in_receipt_keeps_the_file(live_portal, loopback, contributor, armoire, document):
    proxy = loopback(tampering_proxy(live_portal.url, lambda receipt: receipt | {"size": receipt["size"] - 1}))
    write_config(proxy, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 1
    assert document.exists()


def test_server_error_keeps_the_file(loopback, document, capsys):
    write_config(loopback(ServerError), "cof_x")
    assert run("upload", str(document), "--armoire", "1", "--delete-after-upload") == 1
    assert document.exists()
    assert "500" in capsys.readouterr().err


def test_timeout_keeps_the_file(loopback, document, capsys):
    write_config(loopback(NeverAnswers), "cof_x")
    try:
        assert (
            uploader.main(["--timeout", "0.5", "upload", str(document), "--armoire", "1", "--delete-after-upload"]) == 1
        )
    finally:
        NeverAnswers.release.set()
    assert document.exists()
    assert "délai" in capsys.readouterr().err


def test_quota_refusal_keeps_the_file(live_portal, contributor, armoire, document, org, capsys):
    org.storage_quota_bytes = 1024
    db.session.commit()
    write_config(live_portal.url, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 1
    assert document.exists()
    assert "413" in capsys.readouterr().err
    assert stored_versions() == []


def test_reader_token_is_refused_and_keeps_the_file(live_portal, reader, armoire, document, capsys):
    write_config(live_portal.url, token_for(reader))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 3
    assert document.exists()
    assert "403" in capsys.readouterr().err
    assert stored_versions() == []


def test_watch_uploads_stable_files_once(live_portal, contributor, armoire, tmp_path):
    folder = tmp_path / "depot"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"alpha")
    (folder / "b.txt").write_bytes(b"beta")
    write_config(live_portal.url, token_for(contributor))
    code = run("watch", str(folder), "--armoire", str(armoire.id), "--interval", "0.05", "--max-polls", "4")
    assert code == 0
    assert sorted(v.sha256 for v in stored_versions()) == sorted(
        hashlib.sha256(data).hexdigest() for data in (b"alpha", b"beta")
    )
    assert (folder / "a.txt").exists()  # no --delete-after-upload: kept


def test_watch_with_delete_empties_the_folder(live_portal, contributor, armoire, tmp_path):
    folder = tmp_path / "depot"
    folder.mkdir()
    (folder / "scan.png").write_bytes(os.urandom(1000))
    write_config(live_portal.url, token_for(contributor))
    args = ("watch", str(folder), "--armoire", str(armoire.id), "--interval", "0.05", "--max-polls", "3")
    assert run(*args, "--delete-after-upload") == 0
    assert list(folder.iterdir()) == []
    assert len(stored_versions()) == 1


def test_login_stores_the_token_0600_and_logout_revokes(live_portal, contributor, config_home, monkeypatch):
    from portal.api.models import ApiToken
    from tests.conftest import TEST_PASSWORD

    monkeypatch.setenv("COFFRE_PASSWORD", TEST_PASSWORD)
    assert run("login", "--server", live_portal.url, "--email", contributor.email) == 0
    path = config_home / "coffre" / "token.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"].startswith("cof_")
    assert run("logout") == 0
    assert not path.exists()
    db.session.rollback()
    assert db.session.execute(select(ApiToken.revoked_at)).scalar_one() is not None


def test_secure_delete_overwrites_before_unlinking(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_bytes(b"confidentiel" * 1000)
    written: list[bytes] = []
    real_write = os.write

    def spy(fd, data):
        written.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(uploader.os, "write", spy)
    uploader.secure_delete(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert sum(map(len, written)) == 12000 and b"confidentiel" not in b"".join(written)


def test_uploader_imports_no_flask():
    code = (
        "import importlib.util, sys; "
        f"s = importlib.util.spec_from_file_location('u', {str(ROOT / 'desktop' / 'coffre_desktop.py')!r}); "
        "m = importlib.util.module_from_spec(s); sys.modules['u'] = m; s.loader.exec_module(m); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in {'flask', 'werkzeug', 'portal', 'sqlalchemy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
