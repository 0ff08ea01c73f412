"""Bodies over their limit are refused with 413 before anything runs, with or without
Content-Length; bodies at the limit are processed. Through real HTTP servers, since only a
server decides how a chunked body reaches the app."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.documents.models import File, FileVersion, Folder
from portal.documents.services import armoires
from portal.extensions import db
from tests.conftest import TEST_PASSWORD, csrf_token_from
from tests.edge.servers import GunicornServer, WerkzeugServer, send

LIMIT = 1024 * 1024  # the app-wide MAX_CONTENT_LENGTH
UPLOAD_LIMIT = 2 * 1024 * 1024
FORM_OVERHEAD = 1024 * 1024  # documents.upload.FORM_OVERHEAD: the upload body's allowance
BOUNDARY = "----coffre-bodies"


@pytest.fixture(params=["werkzeug", "gunicorn"])
def server(request, app_factory, database_url, tmp_path) -> Iterator[int]:
    """The port of a portal served by a real HTTP server."""
    overrides = {"SERVER_NAME": None, "MAX_UPLOAD_BYTES": UPLOAD_LIMIT}
    app = app_factory(**overrides)  # also empties the tables after the test
    if request.param == "werkzeug":
        running = WerkzeugServer(app)
    else:
        running = GunicornServer(database_url, tmp_path / "instance", overrides)
    with app.app_context():
        try:
            yield running.port
        finally:
            running.stop()


def journal_count() -> int:
    db.session.rollback()  # a fresh snapshot: the server wrote in another connection
    return db.session.scalar(select(func.count(AuditEntry.id)))


def failed_logins(user: User) -> int:
    """Failed sign-ins counted against the member's address (the account-wide row)."""
    from portal.auth.models import LoginThrottle
    from portal.auth.services import account_key

    db.session.rollback()
    failures = db.session.scalar(
        select(LoginThrottle.failures).where(
            LoginThrottle.account_key == account_key(user.email), LoginThrottle.client == "*"
        )
    )
    return failures or 0


def padded(prefix: bytes, size: int, suffix: bytes = b"") -> bytes:
    body = prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix
    assert len(body) == size
    return body


class Browser:
    """Cookies and CSRF token of one visitor, for raw requests on the same session."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self.token = ""

    def page(self, path: str) -> str:
        response = self.http.get(path)
        assert response.status_code == 200, response.status_code
        self.token = csrf_token_from(response.text)
        return response.text

    def login(self, email: str) -> None:
        self.page("/auth/login")
        response = self.http.post(
            "/auth/login", data={"csrf_token": self.token, "email": email, "password": TEST_PASSWORD}
        )
        assert response.status_code in (302, 303), response.status_code

    def headers(self, **extra: str) -> dict[str, str]:
        cookie = "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
        return {"Cookie": cookie, **extra}


@pytest.fixture
def member(make_user, org) -> User:
    return make_user("contributeur", org=org)


# ------------------------------------------------------------------ login form


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_login_form_over_the_limit_is_refused_before_the_login_runs(server, member, chunked):
    visitor = Browser(server)
    visitor.page("/auth/login")
    # The padding comes last: a body cut at the limit would still hold a whole login.
    prefix = f"csrf_token={visitor.token}&email={quote(member.email)}&password=faux&pad=".encode()
    headers = visitor.headers(**{"Content-Type": "application/x-www-form-urlencoded"})
    before = journal_count()

    status, response_headers, body = send(
        server, "POST", "/auth/login", padded(prefix, LIMIT + 1), headers=headers, chunked=chunked
    )
    assert status == 413, body[:300]
    assert response_headers["content-type"].startswith("text/html")
    assert "dépasse la taille autorisée (1024 Kio au plus)" in body.decode()
    assert failed_logins(member) == 0
    assert journal_count() == before

    status, _headers, body = send(
        server, "POST", "/auth/login", padded(prefix, LIMIT), headers=headers, chunked=chunked
    )
    assert status == 422, body[:300]  # processed: a wrong password
    assert failed_logins(member) == 1
    assert journal_count() == before + 1


def test_htmx_gets_a_413_fragment(server, member):
    visitor = Browser(server)
    visitor.page("/auth/login")
    prefix = f"csrf_token={visitor.token}&email={quote(member.email)}&password=faux&pad=".encode()
    headers = visitor.headers(**{"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"})
    status, _headers, body = send(server, "POST", "/auth/login", padded(prefix, LIMIT + 1), headers=headers)
    assert status == 413
    assert b"<html" not in body.lower()
    assert failed_logins(member) == 0


# ------------------------------------------------------------------ API token endpoint


def test_token_endpoint_refuses_over_limit_chunked_json_with_a_problem(server, member):
    prefix = json.dumps({"email": member.email, "password": "faux", "pad": ""}).encode()[:-2]
    suffix = b'"}'
    headers = {"Content-Type": "application/json"}
    before = journal_count()

    status, response_headers, body = send(
        server, "POST", "/api/v1/auth/token", padded(prefix, LIMIT + 1, suffix), headers=headers
    )
    assert status == 413, body[:300]
    assert response_headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 413
    assert failed_logins(member) == 0
    assert journal_count() == before

    status, _headers, body = send(server, "POST", "/api/v1/auth/token", padded(prefix, LIMIT, suffix), headers=headers)
    assert status == 401, body[:300]  # processed: a wrong password
    assert failed_logins(member) == 1


# ------------------------------------------------------------------ a documents form


@pytest.fixture
def armoire(member):
    armoire = armoires.create_armoire(Actor(member.organization_id, member.id), "Comptabilité")
    db.session.commit()
    return armoire


def test_documents_form_over_the_limit_creates_nothing(server, member, armoire):
    visitor = Browser(server)
    visitor.login(member.email)
    visitor.page(f"/armoires/{armoire.id}")
    headers = visitor.headers(**{"Content-Type": "application/x-www-form-urlencoded"})
    prefix = f"csrf_token={visitor.token}&name=Factures&pad=".encode()
    before = journal_count()

    status, _headers, body = send(
        server, "POST", f"/armoires/{armoire.id}/dossiers", padded(prefix, LIMIT + 1), headers=headers
    )
    assert status == 413, body[:300]
    assert journal_count() == before
    assert db.session.scalar(select(func.count(Folder.id))) == 0

    status, _headers, body = send(
        server, "POST", f"/armoires/{armoire.id}/dossiers", padded(prefix, LIMIT), headers=headers
    )
    assert status in (302, 303), body[:300]
    db.session.rollback()
    assert db.session.execute(select(Folder.name)).scalars().all() == ["Factures"]


def test_a_post_that_reads_no_field_still_refuses_an_over_limit_body(server, member):
    """Logout takes its token from the header: its body is read by no one, and must not be ignored."""
    visitor = Browser(server)
    visitor.login(member.email)
    visitor.page("/")
    headers = visitor.headers(**{"Content-Type": "application/x-www-form-urlencoded", "X-CSRFToken": visitor.token})
    status, _headers, _body = send(server, "POST", "/auth/logout", b"a" * (LIMIT + 1), headers=headers)
    assert status == 413
    assert visitor.http.get("/").status_code == 200  # still signed in


# ------------------------------------------------------------------ uploads


def multipart_body(token: str, content: bytes, size: int | None = None) -> bytes:
    """An upload body; ``size`` pads it to that length with text fields before the file."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'.encode()
    file_part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="gros.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    body = head + file_part + tail
    if size is None:
        return body
    padding = bytearray()
    left = size - len(body)
    while left > 0:
        part_head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'.encode()
        room = min(60_000, left - len(part_head) - 2)
        assert room >= 0
        padding += part_head + b"p" * room + b"\r\n"
        left = size - len(body) - len(padding)
    body = head + bytes(padding) + file_part + tail
    assert len(body) == size
    return body


def blob_files(storage: Path) -> list[Path]:
    return [p for p in storage.rglob("*") if p.is_file() and "tmp" not in p.relative_to(storage).parts]


@pytest.fixture
def uploader(server, member, armoire) -> Callable[[bytes], tuple[int, bytes]]:
    visitor = Browser(server)
    visitor.login(member.email)
    visitor.page(f"/armoires/{armoire.id}")

    def upload(body: bytes) -> tuple[int, bytes]:
        headers = visitor.headers(**{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "HX-Request": "true"})
        status, _headers, answer = send(server, "POST", f"/armoires/{armoire.id}/televerser", body, headers=headers)
        return status, answer

    upload.token = visitor.token  # type: ignore[attr-defined]
    return upload


def test_chunked_upload_past_the_app_limit_streams_and_is_stored(uploader, app):
    status, answer = uploader(multipart_body(uploader.token, b"x" * (LIMIT + 512 * 1024)))
    assert status == 201, answer[:300]
    db.session.rollback()
    assert db.session.scalar(select(func.count(File.id))) == 1


def test_chunked_upload_of_exactly_its_body_limit_is_accepted(uploader, app):
    status, answer = uploader(multipart_body(uploader.token, b"x" * UPLOAD_LIMIT, size=UPLOAD_LIMIT + FORM_OVERHEAD))
    assert status == 201, answer[:300]
    db.session.rollback()
    assert db.session.scalar(select(FileVersion.size)) == UPLOAD_LIMIT


def test_chunked_upload_past_its_own_limit_leaves_no_row_and_no_blob(uploader, app):
    storage = Path(app.config["COFFRE_STORAGE_DIR"])
    before = journal_count()
    # The file itself is within its limit: only the body as a whole is one byte too long.
    body = multipart_body(uploader.token, b"x" * UPLOAD_LIMIT, size=UPLOAD_LIMIT + FORM_OVERHEAD + 1)
    status, answer = uploader(body)
    assert status == 413, answer[:300]
    db.session.rollback()
    assert db.session.scalar(select(func.count(FileVersion.id))) == 0
    assert blob_files(storage) == []
    assert journal_count() == before


# ------------------------------------------------------------------ Flask's test client


def test_test_client_over_the_limit_is_refused(client, member):
    page = client.get("/auth/login").get_data(as_text=True)
    prefix = f"csrf_token={csrf_token_from(page)}&email={quote(member.email)}&password=faux&pad=".encode()
    kwargs = {"content_type": "application/x-www-form-urlencoded"}
    assert client.post("/auth/login", data=padded(prefix, LIMIT + 1), **kwargs).status_code == 413
    assert failed_logins(member) == 0
    # A server that decodes chunked bodies (as gunicorn and Werkzeug's do), without Content-Length.
    chunked = {"headers": {"Transfer-Encoding": "chunked"}, "environ_overrides": {"wsgi.input_terminated": True}}
    response = client.post("/auth/login", input_stream=io.BytesIO(padded(prefix, LIMIT + 1)), **kwargs, **chunked)
    assert response.status_code == 413
    assert failed_logins(member) == 0
    response = client.post("/auth/login", input_stream=io.BytesIO(padded(prefix, LIMIT)), **kwargs, **chunked)
    assert response.status_code == 422
    assert failed_logins(member) == 1
