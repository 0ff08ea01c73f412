"""The uploader never destroys a file other than the one it sent (links, swaps) and never
sends the password or token in clear to a remote host."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from tests.desktop.servers import tampering_proxy
from tests.desktop.test_uploader import run, stored_versions, token_for, uploader, write_config

PRECIOUS = b"donnees precieuses hors du dossier\n" * 100


@pytest.fixture
def victim(tmp_path):
    """A file outside the watched/outbox folder that a link points at."""
    path = tmp_path / "ailleurs" / "victime.txt"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


@pytest.fixture
def outbox(tmp_path):
    path = tmp_path / "outbox"
    path.mkdir()
    return path


def test_symlink_in_the_upload_list_is_refused(live_portal, contributor, armoire, victim, outbox, capsys):
    link = outbox / "rapport.pdf"
    link.symlink_to(victim)
    write_config(live_portal.url, token_for(contributor))
    assert run("upload", str(link), "--armoire", str(armoire.id), "--delete-after-upload") == 1
    assert victim.read_bytes() == PRECIOUS
    assert link.is_symlink()
    assert "lien symbolique" in capsys.readouterr().err
    assert stored_versions() == []


def test_hard_link_in_the_upload_list_is_refused(live_portal, contributor, armoire, victim, outbox, capsys):
    link = outbox / "rapport.pdf"
    os.link(victim, link)
    write_config(live_portal.url, token_for(contributor))
    assert run("upload", str(link), "--armoire", str(armoire.id), "--delete-after-upload") == 1
    assert victim.read_bytes() == PRECIOUS and link.read_bytes() == PRECIOUS
    assert "liens multiples" in capsys.readouterr().err
    assert stored_versions() == []


def test_watch_skips_links_and_leaves_their_targets_intact(live_portal, contributor, armoire, victim, outbox):
    (outbox / "lien.txt").symlink_to(victim)
    os.link(victim, outbox / "dur.txt")
    (outbox / "scan.png").write_bytes(b"image")
    write_config(live_portal.url, token_for(contributor))
    args = ("watch", str(outbox), "--armoire", str(armoire.id), "--interval", "0.02", "--max-polls", "3")
    assert run(*args, "--delete-after-upload") == 0
    assert victim.read_bytes() == PRECIOUS
    assert sorted(p.name for p in outbox.iterdir()) == ["dur.txt", "lien.txt"]
    assert [v.sha256 for v in stored_versions()] == [hashlib.sha256(b"image").hexdigest()]


def test_stable_files_lists_only_single_link_regular_files(victim, outbox):
    (outbox / "lien.txt").symlink_to(victim)
    os.link(victim, outbox / "dur.txt")
    os.mkfifo(outbox / "tube")
    (outbox / "ok.txt").write_bytes(b"ok")
    _stable, seen = uploader.stable_files(outbox, {})
    stable, _seen = uploader.stable_files(outbox, seen)
    assert stable == [outbox / "ok.txt"]


def _swap(path, replacement):
    """Runs inside the proxy, after the portal stored the file and before the client gets
    its receipt: whatever happens to the local name now must not be destroyed."""

    def alter(receipt: dict) -> dict:
        replacement(path)
        return receipt

    return alter


def _replace_with_copy(path):
    os.rename(path, path.with_name("original-deplace.pdf"))
    path.write_bytes(path.with_name("original-deplace.pdf").read_bytes())


def test_file_replaced_between_upload_and_delete_is_kept(live_portal, loopback, contributor, armoire, outbox, capsys):
    document = outbox / "facture.pdf"
    content = os.urandom(200_000)
    document.write_bytes(content)
    proxy = loopback(tampering_proxy(live_portal.url, _swap(document, _replace_with_copy)))
    write_config(proxy, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 0
    # The new file at that name was never sent: kept. The original was sent but moved: kept too.
    assert document.read_bytes() == content
    assert (outbox / "original-deplace.pdf").read_bytes() == content
    assert "remplacé" in capsys.readouterr().out
    assert len(stored_versions()) == 1


def test_name_turned_into_a_symlink_after_upload_is_kept(
    live_portal, loopback, contributor, armoire, outbox, victim, capsys
):
    document = outbox / "facture.pdf"
    document.write_bytes(b"a envoyer")

    def to_symlink(path):
        os.rename(path, path.with_name("deplace.pdf"))
        path.symlink_to(victim)

    proxy = loopback(tampering_proxy(live_portal.url, _swap(document, to_symlink)))
    write_config(proxy, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 0
    assert victim.read_bytes() == PRECIOUS and document.is_symlink()
    assert (outbox / "deplace.pdf").read_bytes() == b"a envoyer"
    assert "lien symbolique" in capsys.readouterr().out


def test_hard_link_made_after_upload_is_kept(live_portal, loopback, contributor, armoire, outbox, tmp_path):
    document = outbox / "facture.pdf"
    document.write_bytes(b"a envoyer")
    elsewhere = tmp_path / "copie-liee.pdf"
    proxy = loopback(tampering_proxy(live_portal.url, _swap(document, lambda path: os.link(path, elsewhere))))
    write_config(proxy, token_for(contributor))
    assert run("upload", str(document), "--armoire", str(armoire.id), "--delete-after-upload") == 0
    assert document.read_bytes() == b"a envoyer" and elsewhere.read_bytes() == b"a envoyer"


def test_secure_delete_refuses_links(victim, outbox):
    link = outbox / "lien"
    link.symlink_to(victim)
    with pytest.raises(uploader.RefusedPathError):
        uploader.secure_delete(link)
    hard = outbox / "dur"
    os.link(victim, hard)
    with pytest.raises(uploader.RefusedPathError):
        uploader.secure_delete(hard)
    assert victim.read_bytes() == PRECIOUS and link.is_symlink() and hard.exists()


def test_a_failed_deletion_does_not_stop_the_watcher(live_portal, contributor, armoire, outbox, monkeypatch, capsys):
    (outbox / "a-bloque.txt").write_bytes(b"premier")
    (outbox / "b-libre.txt").write_bytes(b"second")
    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        # A read-only mount cannot be set up here without privileges the test lacks.
        if os.fspath(src).endswith("a-bloque.txt"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(uploader.os, "rename", rename)
    write_config(live_portal.url, token_for(contributor))
    args = ("watch", str(outbox), "--armoire", str(armoire.id), "--interval", "0.02", "--max-polls", "4")
    assert run(*args, "--delete-after-upload") == 0
    assert not (outbox / "b-libre.txt").exists()
    assert len(stored_versions()) == 2  # each uploaded once: the failed one is not resent
    assert "suppression impossible" in capsys.readouterr().out


@pytest.mark.parametrize(
    "url",
    ["http://coffre.example.org", "http://10.0.0.5:8000", "http://localhost.example.org", "ftp://localhost", "coffre"],
)
def test_login_refuses_cleartext_or_odd_servers(url, monkeypatch, config_home, capsys):
    monkeypatch.setenv("COFFRE_PASSWORD", "ne doit pas partir")
    assert run("login", "--server", url, "--email", "a@example.org") == uploader.EXIT_USAGE
    assert not (config_home / "coffre" / "token.json").exists()
    assert capsys.readouterr().err


@pytest.mark.parametrize(
    "url", ["https://coffre.example.org", "http://127.0.0.1:5000", "http://localhost:8000", "http://[::1]:8000"]
)
def test_https_and_loopback_http_are_accepted(url):
    assert uploader.server_url_problem(url) is None


def test_a_saved_cleartext_server_is_refused_before_sending(outbox, capsys):
    document = outbox / "facture.pdf"
    document.write_bytes(b"x")
    write_config("http://coffre.example.org", "cof_secret")
    assert run("upload", str(document), "--armoire", "1", "--delete-after-upload") == uploader.EXIT_USAGE
    assert document.exists()
    assert "https" in capsys.readouterr().err
