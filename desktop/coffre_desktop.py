#!/usr/bin/env python3
"""Coffre desktop uploader: send files to a Coffre portal, optionally deleting the local copy.

Standard library and httpx only (no Flask). Usage:

    python desktop/coffre_desktop.py login --server https://coffre.example [--email E]
    python desktop/coffre_desktop.py login --server https://coffre.example --token [SECRET]
    python desktop/coffre_desktop.py upload PATH... --to "Armoire/Dossier/Sous-dossier" [--on-conflict version]
                                            [--delete-after-upload]   (or --armoire ID [--folder ID])
    python desktop/coffre_desktop.py watch FOLDER --to "Armoire/Dossier" [--delete-after-upload] [--interval S]
    python desktop/coffre_desktop.py logout

``login --token`` takes a token created in the portal (Mon compte → Jetons d'API); without a
value it is read from COFFRE_TOKEN or asked for. Files go through tus resumable uploads
(/api/v1/uploads/): parts of 8 MiB with a SHA-256 Upload-Checksum, retried from the
server's offset after a network error, and resumed by a later run (the upload's address is
kept in uploads.json next to the token, for the same file size and modification time).
``--on-conflict`` (version by default) says what happens when the name is taken.

A local file is deleted only when the server's receipt says ``delete_local: true`` *and*
its SHA-256 and size equal what this program computed over the bytes it sent.

Exit codes: 0 success; 1 at least one file failed (kept); 2 usage or configuration error;
3 not logged in or token refused (401/403).
"""

from __future__ import annotations

import argparse
import base64
import errno
import getpass
import hashlib
import json
import os
import secrets
import stat
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

CHUNK = 1024 * 1024
# A tus PATCH carries this much: a multiple of the server's 1 MiB segment, so every part
# ends on a boundary the server keeps; a cut loses at most one part.
PART = 8 * CHUNK
RETRIES = 8
BACKOFF = 0.2  # seconds, doubled after each failed attempt (capped at 10 s)
TUS = {"Tus-Resumable": "1.0.0"}
# Answers after which the part is sent again from the server's offset: offset mismatch
# (a cut request the server had not finished with), busy, checksum mismatch, gateways.
RETRY_STATUSES = frozenset({409, 423, 460, 500, 502, 503, 504})
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def server_url_problem(url: str) -> str | None:
    """Why ``url`` may not be used as the server, or None.

    The password and the bearer token travel in every request: plain HTTP is accepted only
    to this machine (tests, a local tunnel), never over a network.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "adresse de serveur invalide"
    if parts.scheme not in {"http", "https"} or not host:
        return "adresse de serveur invalide : https://… attendu"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "connexion non chiffrée refusée : utilisez https:// (http:// seulement vers localhost)"
    return None


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coffre"


def config_file() -> Path:
    return config_dir() / "token.json"


def save_config(server: str, token: str, expires_at: str | None) -> Path:
    path = config_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".token-{secrets.token_hex(4)}")
    # Created 0600 from the start: never a moment where another user could read it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"server": server.rstrip("/"), "token": token, "expires_at": expires_at}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load_config() -> dict[str, Any] | None:
    try:
        return json.loads(config_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------- safe file access


class RefusedPathError(Exception):
    """A path this program will not read or delete; the message says why (in French)."""


# A symlink or a second hard link would make "delete the file I sent" destroy another
# file (the link's target, or a name elsewhere sharing the inode). Windows has no
# O_NOFOLLOW: the lstat checks below still refuse symlinks there.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not hang the watcher
_BINARY = getattr(os, "O_BINARY", 0)


def open_regular(path: Path, *, writable: bool) -> tuple[int, os.stat_result]:
    """Open ``path`` once, without following a symlink, and insist on a regular file with a
    single link. Everything later (sending, verifying, overwriting) goes through this
    descriptor, so swapping the name afterwards cannot redirect it."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise RefusedPathError("lien symbolique refusé")
        flags = (os.O_RDWR if writable else os.O_RDONLY) | _NOFOLLOW | _NONBLOCK | _BINARY
        fd = os.open(path, flags)
    except RefusedPathError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RefusedPathError("lien symbolique refusé") from None
        raise RefusedPathError(f"ouverture impossible ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedPathError("n'est pas un fichier ordinaire")
        if info.st_nlink != 1:
            raise RefusedPathError(f"fichier à liens multiples ({info.st_nlink} noms) refusé")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _check_still_ours(path: Path, fd: int) -> os.stat_result:
    """Refuse unless ``path`` still names, directly, the single-link file open as ``fd``."""
    mine = os.fstat(fd)
    try:
        there = os.lstat(path)
    except FileNotFoundError:
        raise RefusedPathError("le fichier a été déplacé depuis l'envoi") from None
    if stat.S_ISLNK(there.st_mode):
        raise RefusedPathError("le nom désigne désormais un lien symbolique")
    if not _same_file(mine, there):
        raise RefusedPathError("le fichier a été remplacé depuis l'envoi")
    if mine.st_nlink != 1:
        raise RefusedPathError(f"le fichier a désormais {mine.st_nlink} noms (liens)")
    return mine


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the unlink itself is done
    finally:
        os.close(dir_fd)


def shred_open_file(path: Path, fd: int) -> None:
    """Move the file to a hidden random name, overwrite it with random bytes, fsync,
    truncate and unlink it, checking first that ``path`` still names the file open as ``fd``.

    The name goes first: if a later step fails, the original name is already gone (so a
    watcher does not pick the half-shredded file up again) or, if the rename itself
    failed, the file is intact. Raises RefusedPathError (nothing destroyed) or OSError.
    This defeats casual undelete on a plain disk; it cannot reach copies an SSD, a
    copy-on-write or journaling filesystem, a snapshot or a backup already made (README).
    """
    _check_still_ours(path, fd)
    hidden = path.with_name(f".coffre-{secrets.token_hex(12)}")
    os.rename(path, hidden)
    # The name could have been swapped between the check and the rename: shred only what
    # is provably this file, and put anything else back where it was.
    try:
        _check_still_ours(hidden, fd)
    except RefusedPathError:
        os.rename(hidden, path)
        raise RefusedPathError("le fichier a été remplacé pendant la suppression") from None
    size = os.fstat(fd).st_size
    offset = 0
    while offset < size:
        block = secrets.token_bytes(min(CHUNK, size - offset))
        os.lseek(fd, offset, os.SEEK_SET)
        offset += os.write(fd, block)
    os.fsync(fd)
    os.ftruncate(fd, 0)
    os.fsync(fd)
    os.unlink(hidden)
    _fsync_dir(path.parent)


def secure_delete(path: Path) -> None:
    """Shred and unlink ``path`` (a regular file with a single link; else RefusedPathError)."""
    fd, _info = open_regular(path, writable=True)
    try:
        shred_open_file(path, fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------- upload


@dataclass
class Sent:
    """What this program measured over the bytes it actually sent."""

    sha256: str = ""
    size: int = 0


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


@dataclass
class Outcome:
    path: Path
    ok: bool
    deleted: bool
    message: str
    auth_refused: bool = False


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('type', '')}: {body.get('detail', '')}".strip()
    except ValueError:
        return f"HTTP {response.status_code}"


@dataclass
class Target:
    armoire: int
    folder: int | None
    on_conflict: str = "version"


def upload_one(client: httpx.Client, path: Path, target: Target, delete_after_upload: bool) -> Outcome:
    try:
        # Opened read-write when the file is to be shredded: the overwrite must go through
        # the very descriptor the bytes were sent from.
        fd, _info = open_regular(path, writable=delete_after_upload)
    except RefusedPathError as refusal:
        return Outcome(path, False, False, f"{refusal} : fichier non envoyé, conservé")
    with os.fdopen(fd, "r+b" if delete_after_upload else "rb") as handle:
        return _send(client, path, handle, target, delete_after_upload)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _state_file() -> Path:
    return config_dir() / "uploads.json"


def _load_state() -> dict[str, Any]:
    try:
        data = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(state: dict[str, Any]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out)
    os.replace(temp, path)


def _state_key(path: Path, target: Target) -> str:
    return f"{path.resolve()}|{target.armoire}|{target.folder}"


class TusUploadError(Exception):
    def __init__(self, message: str, auth_refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.auth_refused = auth_refused


def _refused(response: httpx.Response) -> TusUploadError:
    return TusUploadError(f"refusé ({_problem_text(response)}) : fichier conservé", response.status_code in (401, 403))


def _create(client: httpx.Client, path: Path, size: int, target: Target, delete_after_upload: bool) -> str:
    metadata = {
        "filename": path.name,
        "armoire_id": str(target.armoire),
        "on_conflict": target.on_conflict,
        "delete_after_upload": "true" if delete_after_upload else "false",
    }
    if target.folder is not None:
        metadata["folder_id"] = str(target.folder)
    response = client.post(
        "/api/v1/uploads/",
        headers=TUS
        | {"Upload-Length": str(size), "Upload-Metadata": ",".join(f"{k} {_b64(v)}" for k, v in metadata.items())},
    )
    if response.status_code != 201:
        raise _refused(response)
    return httpx.URL(response.headers["Location"]).path


def _offset(client: httpx.Client, location: str) -> int | None:
    """The server's offset, or None when the upload is unknown or expired there."""
    response = client.head(location, headers=TUS)
    if response.status_code in (404, 410):
        return None
    if response.status_code != 200:
        raise _refused(response)
    return int(response.headers["Upload-Offset"])


def _patch(client: httpx.Client, location: str, handle: BinaryIO, offset: int, size: int) -> httpx.Response:
    handle.seek(offset)
    part = handle.read(min(PART, size - offset))
    checksum = base64.b64encode(hashlib.sha256(part).digest()).decode()
    return client.patch(
        location,
        content=part,
        headers=TUS
        | {
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Upload-Checksum": f"sha256 {checksum}",
        },
    )


def _tus_upload(
    client: httpx.Client, path: Path, handle: BinaryIO, size: int, target: Target, delete_after_upload: bool
) -> dict[str, Any]:
    """Send the file through tus, resuming an earlier run's upload of the same file; returns the receipt."""
    info = os.fstat(handle.fileno())
    key = _state_key(path, target)
    state = _load_state()
    saved = state.get(key)
    location = None
    if isinstance(saved, dict) and saved.get("size") == size and saved.get("mtime_ns") == info.st_mtime_ns:
        location = saved.get("location")
    offset = _offset(client, location) if location else None
    if offset is None:
        location = _create(client, path, size, target, delete_after_upload)
        offset = 0
        state[key] = {"location": location, "size": size, "mtime_ns": info.st_mtime_ns}
        _save_state(state)
    assert location is not None
    failures = 0
    while True:
        try:
            response = _patch(client, location, handle, offset, size)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 204:
            failures = 0
            offset = int(response.headers["Upload-Offset"])
            if "Coffre-File-Id" in response.headers:
                break
            continue
        if response is not None and (
            response.status_code not in RETRY_STATUSES
            or (response.status_code == 409 and "Upload-Offset" not in response.headers)
        ):
            # Refused for good (a name taken at the end, the quota…): only a token problem
            # leaves the upload to resume after a new login.
            if response.status_code not in (401, 403, 429):
                _forget(key)
            raise _refused(response)
        failures += 1
        if failures > RETRIES:
            raise TusUploadError("réseau instable : envoi interrompu, relancez pour reprendre ; fichier conservé")
        # Back off, then continue from what the server kept.
        time.sleep(min(BACKOFF * 2**failures, 10))
        try:
            current = _offset(client, location)
        except httpx.TransportError:
            continue
        if current is None:
            _forget(key)
            raise TusUploadError("l'envoi a expiré sur le serveur : relancez ; fichier conservé")
        offset = current
    _forget(key)
    receipt = client.get(location)
    if receipt.status_code != 200:
        raise TusUploadError("reçu illisible : fichier conservé")
    return receipt.json()


def _forget(key: str) -> None:
    state = _load_state()
    if state.pop(key, None) is not None:
        _save_state(state)


def _send(client: httpx.Client, path: Path, handle: BinaryIO, target: Target, delete_after_upload: bool) -> Outcome:
    sent = Sent()
    try:
        # What the receipt must match: the file's bytes, read through this very descriptor.
        sent.sha256, sent.size = _digest(handle)
        receipt = _tus_upload(client, path, handle, sent.size, target, delete_after_upload)
    except TusUploadError as failure:
        return Outcome(path, False, False, failure.message, failure.auth_refused)
    except httpx.TimeoutException:
        return Outcome(path, False, False, "délai dépassé : fichier conservé, relancez l'envoi")
    except httpx.HTTPError as exc:
        return Outcome(path, False, False, f"erreur réseau ({exc.__class__.__name__}) : fichier conservé")
    except OSError as exc:
        return Outcome(path, False, False, f"lecture impossible ({exc.strerror}) : fichier conservé")
    except ValueError:
        return Outcome(path, False, False, "reçu illisible : fichier conservé")
    if not receipt.get("complete"):
        return Outcome(path, False, False, "reçu incomplet : fichier conservé")
    if not delete_after_upload:
        return Outcome(
            path, True, False, f"envoyé (fichier {receipt.get('file_id')}, version {receipt.get('version')})"
        )
    return _apply_receipt(path, handle, receipt, sent)


def _apply_receipt(path: Path, handle: BinaryIO, receipt: dict[str, Any], sent: Sent) -> Outcome:
    file_id = receipt.get("file_id")
    if receipt.get("delete_local") is not True:
        return Outcome(path, True, False, f"envoyé (fichier {file_id}) ; le serveur n'autorise pas la suppression")
    if receipt.get("sha256") != sent.sha256 or receipt.get("size") != sent.size:
        return Outcome(
            path,
            False,
            False,
            f"reçu incohérent (SHA-256/taille du serveur ≠ envoi local) : fichier {file_id} conservé localement",
        )
    try:
        # The file must still be what was sent: a change since then is not in the portal.
        current = _digest(handle)
    except OSError as exc:
        return Outcome(path, True, False, f"envoyé ; vérification locale impossible ({exc.strerror}) : conservé")
    if current != (sent.sha256, sent.size):
        return Outcome(path, True, False, "envoyé, mais le fichier a changé depuis : conservé")
    try:
        shred_open_file(path, handle.fileno())
    except RefusedPathError as refusal:
        return Outcome(path, True, False, f"envoyé (fichier {file_id}) ; suppression refusée : {refusal} ; conservé")
    except OSError as exc:
        # Uploaded and durable on the server: report, keep going with the other files.
        return Outcome(path, True, False, f"envoyé (fichier {file_id}) ; suppression impossible ({exc.strerror})")
    return Outcome(path, True, True, f"envoyé (fichier {file_id}) et supprimé localement")


def _digest(handle: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


# ----------------------------------------------------------------- commands


def _client(config: dict[str, Any], timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=config["server"],
        headers={"Authorization": f"Bearer {config['token']}", "User-Agent": "coffre-desktop/1"},
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
    )


def _report(outcome: Outcome) -> None:
    stream = sys.stdout if outcome.ok else sys.stderr
    print(f"{outcome.path}: {outcome.message}", file=stream)


def _login_with_token(server: str, secret: str, timeout: float) -> int:
    """A token created in the portal: checked with /me before it is saved."""
    with httpx.Client(base_url=server, timeout=timeout) as client:
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    if response.status_code != 200:
        print(f"jeton refusé : {_problem_text(response)}", file=sys.stderr)
        return EXIT_AUTH
    body = response.json()
    expires_at = (body.get("token") or {}).get("expires_at")
    path = save_config(server, secret, expires_at)
    print(f"connecté en tant que {body.get('email')} ; jeton enregistré dans {path} (expire le {expires_at})")
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    problem = server_url_problem(args.server)
    if problem is not None:
        print(f"{args.server}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.token is not None:
        secret = args.token or os.environ.get("COFFRE_TOKEN") or getpass.getpass("Jeton d'API : ")
        return _login_with_token(args.server.rstrip("/"), secret.strip(), args.timeout)
    email = args.email or input("E-mail : ")
    password = os.environ.get("COFFRE_PASSWORD") or getpass.getpass("Mot de passe : ")
    payload: dict[str, Any] = {"email": email, "password": password, "name": args.name}
    server = args.server.rstrip("/")
    with httpx.Client(base_url=server, timeout=args.timeout) as client:
        response = client.post("/api/v1/auth/token", json=payload)
        if response.status_code == 401 and response.headers.get("content-type", "").startswith("application/problem"):
            problem = response.json()
            if problem.get("type") == "/problems/two-factor-required":
                payload["code"] = args.code or input("Code de double authentification : ")
                if problem.get("challenge"):
                    payload["challenge"] = problem["challenge"]
                response = client.post("/api/v1/auth/token", json=payload)
    if response.status_code != 201:
        print(f"connexion refusée : {_problem_text(response)}", file=sys.stderr)
        return EXIT_AUTH
    body = response.json()
    path = save_config(server, body["token"], body.get("expires_at"))
    print(f"connecté ; jeton enregistré dans {path} (expire le {body.get('expires_at')})")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    config = load_config()
    if config is None:
        return EXIT_OK
    problem = server_url_problem(str(config.get("server", "")))
    if problem is not None:
        print(f"{problem} : jeton non révoqué côté serveur, révoquez-le sur le portail", file=sys.stderr)
    else:
        try:
            with _client(config, args.timeout) as client:
                client.delete("/api/v1/auth/token")
        except httpx.HTTPError as exc:
            print(f"révocation côté serveur impossible ({exc.__class__.__name__})", file=sys.stderr)
    config_file().unlink(missing_ok=True)
    print("déconnecté")
    return EXIT_OK


class UnsafeServerError(Exception):
    """The saved server address would send the token in clear."""


def _require_config() -> dict[str, Any] | None:
    config = load_config()
    if config is None:
        print("non connecté : lancez d'abord « login »", file=sys.stderr)
        return None
    # A configuration written by hand or by an older version is checked as strictly as login.
    problem = server_url_problem(str(config.get("server", "")))
    if problem is not None:
        raise UnsafeServerError(f"{config.get('server')}: {problem}")
    return config


class TargetError(Exception):
    """--to names no armoire or folder (or is ambiguous)."""


def resolve_target(
    client: httpx.Client, to: str | None, armoire: int | None, folder: int | None, on_conflict: str
) -> Target:
    """``--to "Armoire/Dossier/Sous-dossier"`` (names, compared exactly after Unicode NFC),
    or ids with --armoire/--folder."""
    if to is None:
        if armoire is None:
            raise TargetError('indiquez --to "Armoire/Dossier" ou --armoire ID')
        return Target(armoire, folder, on_conflict)
    parts = [unicodedata.normalize("NFC", p.strip()) for p in to.strip("/").split("/") if p.strip()]
    if not parts:
        raise TargetError("--to est vide")
    response = client.get("/api/v1/armoires")
    if response.status_code != 200:
        raise TargetError(f"liste des armoires impossible ({_problem_text(response)})")
    armoires = [a for a in response.json()["items"] if unicodedata.normalize("NFC", a["name"]) == parts[0]]
    if len(armoires) != 1:
        raise TargetError(f"armoire « {parts[0]} » introuvable")
    armoire_id = armoires[0]["id"]
    folder_id = None
    if len(parts) > 1:
        response = client.get(f"/api/v1/armoires/{armoire_id}/dossiers")
        if response.status_code != 200:
            raise TargetError(f"liste des dossiers impossible ({_problem_text(response)})")
        folders = response.json()["items"]
        for name in parts[1:]:
            matches = [
                f for f in folders if f["parent_id"] == folder_id and unicodedata.normalize("NFC", f["name"]) == name
            ]
            if len(matches) != 1:
                raise TargetError(f"dossier « {name} » introuvable dans « {to} »")
            folder_id = matches[0]["id"]
    return Target(armoire_id, folder_id, on_conflict)


def cmd_upload(args: argparse.Namespace) -> int:
    config = _require_config()
    if config is None:
        return EXIT_AUTH
    status = EXIT_OK
    with _client(config, args.timeout) as client:
        try:
            target = resolve_target(client, args.to, args.armoire, args.folder, args.on_conflict)
        except TargetError as error:
            print(str(error), file=sys.stderr)
            return EXIT_USAGE
        for name in args.paths:
            path = Path(name)
            outcome = upload_one(client, path, target, args.delete_after_upload)
            _report(outcome)
            if outcome.auth_refused:
                return EXIT_AUTH
            if not outcome.ok:
                status = EXIT_FAILED
    return status


def stable_files(folder: Path, previous: dict[Path, tuple[int, int]]) -> tuple[list[Path], dict[Path, tuple[int, int]]]:
    """Regular single-link files whose size and mtime did not change since the previous poll.

    Symlinks and hard-linked files are never picked up: deleting them after the upload
    would destroy a file outside the watched folder (upload_one refuses them too).
    """
    current: dict[Path, tuple[int, int]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue  # vanished between listing and lstat
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            continue
        current[entry] = (info.st_size, info.st_mtime_ns)
    stable = [path for path, signature in current.items() if previous.get(path) == signature]
    return stable, current


def cmd_watch(args: argparse.Namespace) -> int:
    config = _require_config()
    if config is None:
        return EXIT_AUTH
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"{folder}: n'est pas un dossier", file=sys.stderr)
        return EXIT_USAGE
    done: dict[Path, tuple[int, int]] = {}
    previous: dict[Path, tuple[int, int]] = {}
    polls = 0
    with _client(config, args.timeout) as client:
        try:
            target = resolve_target(client, args.to, args.armoire, args.folder_id, args.on_conflict)
        except TargetError as error:
            print(str(error), file=sys.stderr)
            return EXIT_USAGE
        while args.max_polls is None or polls < args.max_polls:
            polls += 1
            stable, previous = stable_files(folder, previous)
            for path in stable:
                if done.get(path) == previous[path]:
                    continue  # already handled in this state; a new version will differ
                try:
                    outcome = upload_one(client, path, target, args.delete_after_upload)
                except OSError as exc:
                    # One unreadable file must not stop the watcher; it is retried next poll.
                    outcome = Outcome(path, False, False, f"erreur locale ({exc.strerror}) : fichier conservé")
                _report(outcome)
                if outcome.auth_refused:
                    return EXIT_AUTH
                if outcome.ok:
                    done[path] = previous[path]
            time.sleep(args.interval)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coffre_desktop", description="Envoi de fichiers vers Coffre")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("COFFRE_TIMEOUT", "60")))
    commands = parser.add_subparsers(dest="command", required=True)
    login = commands.add_parser("login")
    login.add_argument("--server", required=True)
    login.add_argument("--email")
    login.add_argument("--code", help="code de double authentification (sinon demandé)")
    login.add_argument("--name", default="Application de bureau")
    login.add_argument(
        "--token", nargs="?", const="", help="jeton créé sur le portail (sinon COFFRE_TOKEN, ou demandé)"
    )
    login.set_defaults(func=cmd_login)
    logout = commands.add_parser("logout")
    logout.set_defaults(func=cmd_logout)
    upload = commands.add_parser("upload")
    upload.add_argument("paths", nargs="+")
    upload.add_argument("--to", help='armoire et dossier par leur nom : "Comptabilité 2026/Factures"')
    upload.add_argument("--armoire", type=int)
    upload.add_argument("--on-conflict", choices=["version", "rename", "refuse"], default="version")
    upload.add_argument("--folder", type=int)
    upload.add_argument("--delete-after-upload", action="store_true")
    upload.set_defaults(func=cmd_upload)
    watch = commands.add_parser("watch")
    watch.add_argument("folder")
    watch.add_argument("--to", help='armoire et dossier par leur nom : "Comptabilité 2026/Factures"')
    watch.add_argument("--armoire", type=int)
    watch.add_argument("--on-conflict", choices=["version", "rename", "refuse"], default="version")
    watch.add_argument("--folder-id", type=int)
    watch.add_argument("--delete-after-upload", action="store_true")
    watch.add_argument("--interval", type=float, default=2.0)
    watch.add_argument("--max-polls", type=int, help=argparse.SUPPRESS)
    watch.set_defaults(func=cmd_watch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UnsafeServerError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # An interrupted upload never deletes anything: the receipt was not received.
        print("interrompu : les fichiers non confirmés sont conservés", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
