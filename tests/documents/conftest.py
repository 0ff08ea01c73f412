"""Helpers for the documents tests: armoires, uploads through HTTP, the storage directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from portal.audit.context import Actor
from portal.documents.models import File
from portal.documents.services import armoires
from portal.extensions import db
from tests.conftest import csrf


@pytest.fixture
def armoire(app, admin):
    armoire = armoires.create_armoire(Actor(admin.organization_id, admin.id), "Comptabilité")
    db.session.commit()
    return armoire


@pytest.fixture
def storage_dir(app) -> Path:
    return Path(app.config["COFFRE_STORAGE_DIR"])


BOUNDARY = "----coffre-test-boundary"


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> bytes:
    """A multipart body in the given order (the test client's encoder spools to a temp file)."""
    out = bytearray()
    for name, value in fields:
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for field, filename, content in files:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "%0D").replace("\n", "%0A")
        out += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{quoted}"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        out += content + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def post_multipart(client, url: str, body: bytes, **kwargs):
    return client.post(
        url,
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        content_length=len(body),
        **kwargs,
    )


def upload(client, armoire_id: int, name: str, content: bytes, *, folder_id=None, token=None, header=True):
    """POST one file like the upload form (CSRF field first); returns the response."""
    token = token or csrf(client, f"/armoires/{armoire_id}")
    query = f"?dossier={folder_id}" if folder_id else ""
    body = multipart([("csrf_token", token)], [("file", name, content)])
    return post_multipart(
        client, f"/armoires/{armoire_id}/televerser{query}", body, headers={"HX-Request": "true"} if header else {}
    )


def last_file() -> File:
    return db.session.execute(db.select(File).order_by(File.id.desc()).limit(1)).scalar_one()


def blob_files(storage_dir: Path) -> list[Path]:
    return [p for p in storage_dir.rglob("*") if p.is_file() and "tmp" not in p.relative_to(storage_dir).parts]
