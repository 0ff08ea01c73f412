"""The uploader through tus: token login, --to paths, --on-conflict, resuming after cuts."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import select

from portal.extensions import db
from tests.desktop.servers import cutting_proxy
from tests.desktop.test_uploader import run, stored_versions, token_for, uploader, write_config

MIB = 1 << 20


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(uploader, "BACKOFF", 0.01)


@pytest.fixture
def big(tmp_path):
    path = tmp_path / "outbox" / "scan.tiff"
    path.parent.mkdir()
    path.write_bytes(os.urandom(20 * MIB + 3))
    return path


@pytest.fixture
def factures(app, armoire):
    from portal.documents.models import Folder

    year = Folder(organization_id=armoire.organization_id, armoire_id=armoire.id, name="Comptabilité 2026")
    db.session.add(year)
    db.session.flush()
    folder = Folder(organization_id=armoire.organization_id, armoire_id=armoire.id, name="Factures", parent_id=year.id)
    db.session.add(folder)
    db.session.commit()
    return folder


def test_login_with_a_portal_token(live_portal, contributor, capsys, monkeypatch):
    secret = token_for(contributor)
    assert run("login", "--server", live_portal.url, "--token", secret) == 0
    assert uploader.load_config()["token"] == secret
    monkeypatch.setenv("COFFRE_TOKEN", secret)
    assert run("login", "--server", live_portal.url, "--token") == 0
    assert run("login", "--server", live_portal.url, "--token", "cof_faux") == uploader.EXIT_AUTH
    assert "jeton refusé" in capsys.readouterr().err


def test_to_a_folder_path_and_version_by_default(live_portal, contributor, armoire, factures, tmp_path, capsys):
    from portal.documents.models import File

    write_config(live_portal.url, token_for(contributor))
    document = tmp_path / "facture.pdf"
    document.write_bytes(b"%PDF-1 premiere")
    assert run("upload", str(document), "--to", "Archives/Comptabilité 2026/Factures") == 0
    document.write_bytes(b"%PDF-1 seconde")
    assert run("upload", str(document), "--to", "Archives/Comptabilité 2026/Factures") == 0
    db.session.rollback()
    (file,) = db.session.execute(select(File)).scalars().all()
    assert file.folder_id == factures.id
    assert sorted(v.number for v in stored_versions()) == [1, 2]
    assert run("upload", str(document), "--to", "Archives/Comptabilité 2026/Factures", "--on-conflict", "refuse") == 1
    assert "name-taken" in capsys.readouterr().err
    assert run("upload", str(document), "--to", "Archives/Inconnu") == uploader.EXIT_USAGE


def test_cut_parts_are_resent_from_the_server_offset(live_portal, loopback, contributor, armoire, big):
    seen: list[int] = []
    proxy = loopback(cutting_proxy(live_portal.url, lambda n, _offset: n in (2, 3), seen))
    write_config(proxy, token_for(contributor))
    assert run("upload", str(big), "--armoire", str(armoire.id), "--delete-after-upload") == 0
    assert not big.exists()
    # Parts of 8 MiB; the second and third attempts were cut and sent again from 8 MiB.
    assert seen == [0, 8 * MIB, 8 * MIB, 8 * MIB, 16 * MIB]
    (version,) = stored_versions()
    assert version.size == 20 * MIB + 3


def test_a_later_run_resumes_the_upload(live_portal, loopback, contributor, armoire, big, capsys):
    content = big.read_bytes()
    seen: list[int] = []
    # Every part after the first is cut: the run gives up, the upload stays on the server.
    proxy = loopback(cutting_proxy(live_portal.url, lambda n, _offset: n > 1, seen))
    secret = token_for(contributor)
    write_config(proxy, secret)
    assert run("upload", str(big), "--armoire", str(armoire.id)) == 1
    assert "relancez pour reprendre" in capsys.readouterr().err
    assert stored_versions() == []
    resumed: list[int] = []
    write_config(loopback(cutting_proxy(live_portal.url, lambda n, _offset: False, resumed)), secret)
    assert run("upload", str(big), "--armoire", str(armoire.id)) == 0
    assert resumed == [8 * MIB, 16 * MIB]
    (version,) = stored_versions()
    assert version.sha256 == hashlib.sha256(content).hexdigest()
