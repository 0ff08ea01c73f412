"""Security review fixes: hostile JSON, body limits, journalled cross-organisation probes,
rate limits, token revocation on credential changes, the journalled receipt promise."""

from __future__ import annotations

import hashlib
import io

import pytest
from sqlalchemy import select

from portal.api import services
from portal.api.models import ApiToken
from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.auth import clock
from portal.documents.models import File, FileVersion, Folder
from portal.extensions import db
from tests.api.conftest import bearer
from tests.conftest import TEST_PASSWORD

TOKEN_URL = "/api/v1/auth/token"
MIB = 1024 * 1024


def problem(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    return body


def upload(client, secret, armoire_id, content=b"contenu\n", **fields):
    data = {"armoire_id": str(armoire_id), **{k: str(v) for k, v in fields.items()}}
    data["file"] = (io.BytesIO(content), "note.txt")
    return client.post("/api/v1/fichiers", data=data, headers=bearer(secret), content_type="multipart/form-data")


@pytest.fixture
def armoire(make_armoire, org):
    return make_armoire(org)


# ------------------------------------------------------------------ hostile JSON (M1, M3)


@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 50_000])
def test_deeply_nested_json_is_a_400_not_a_500(client, body):
    detail = problem(client.post(TOKEN_URL, data=body, content_type="application/json"), 400)["detail"]
    assert "imbriqué" in detail


@pytest.mark.parametrize("field", ["email", "password", "name", "code", "challenge"])
def test_lone_surrogates_are_refused_with_422(client, contributor, field):
    payload = {"email": f'"{contributor.email}"', "password": f'"{TEST_PASSWORD}"', field: '"a\\udcffb"'}
    body = "{" + ",".join(f'"{k}":{v}' for k, v in payload.items()) + "}"
    refused = problem(client.post(TOKEN_URL, data=body, content_type="application/json"), 422)
    assert [error["field"] for error in refused["errors"]] == [field]
    assert db.session.execute(select(ApiToken)).first() is None


# ------------------------------------------------------------------ body limits (M2)


def test_token_endpoint_refuses_a_large_body_whatever_the_app_limit(app_factory):
    for app in (app_factory(), app_factory(MAX_CONTENT_LENGTH=MIB)):
        client = app.test_client()
        big = b'{"email":"a@b.c","password":"' + b"a" * (2 * MIB) + b'"}'
        problem(client.post(TOKEN_URL, data=big, content_type="application/json"), 413)
        form = b"email=a%40b.c&password=" + b"a" * (2 * MIB)
        problem(client.post(TOKEN_URL, data=form, content_type="application/x-www-form-urlencoded"), 413)


def test_token_endpoint_answers_413_from_the_declared_length_alone(client):
    # Only 2 bytes follow: the refusal comes from Content-Length, before reading anything.
    response = client.post(
        TOKEN_URL,
        input_stream=io.BytesIO(b"{}"),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(300 * MIB)},
    )
    problem(response, 413)


def multipart(fields: dict[str, str], content: bytes) -> bytes:
    """A pre-encoded body: Werkzeug's test builder spools big forms to a file it never closes."""
    body = b"".join(
        f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    body += b'--b\r\nContent-Disposition: form-data; name="file"; filename="gros.bin"\r\n\r\n'
    return body + content + b"\r\n--b--\r\n"


def test_uploads_above_the_app_body_limit_still_work(app_factory, contributor, make_token, armoire):
    client = app_factory(MAX_CONTENT_LENGTH=MIB).test_client()
    secret = make_token(contributor)
    content = b"z" * (3 * MIB)
    kwargs = {"headers": bearer(secret), "content_type": "multipart/form-data; boundary=b"}
    response = client.post("/api/v1/fichiers", data=multipart({"armoire_id": str(armoire.id)}, content), **kwargs)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["sha256"] == hashlib.sha256(content).hexdigest()
    file_id = response.get_json()["file_id"]
    new_version = client.post(f"/api/v1/fichiers/{file_id}/versions", data=multipart({}, content + b"!"), **kwargs)
    assert new_version.status_code == 201, new_version.get_json()


@pytest.mark.parametrize("route", ["new", "version"])
def test_upload_declared_beyond_the_upload_limit_is_an_early_413(
    app_factory, contributor, make_token, armoire, store_file, route
):
    app = app_factory(MAX_UPLOAD_BYTES=2 * MIB)  # whatever the app-wide limit is
    client = app.test_client()
    secret = make_token(contributor)
    url = "/api/v1/fichiers"
    if route == "version":
        url = f"/api/v1/fichiers/{store_file(contributor, armoire).id}/versions"
    before = db.session.execute(select(FileVersion.id)).all()
    response = client.post(
        url,
        input_stream=io.BytesIO(b"--b\r\n"),
        environ_overrides={"CONTENT_LENGTH": str(2 * MIB + MIB + 1)},
        content_type="multipart/form-data; boundary=b",
        headers=bearer(secret),
    )
    problem(response, 413)
    assert db.session.execute(select(FileVersion.id)).all() == before


# ------------------------------------------------------------------ cross-organisation probes (L3)


def probes(org_id: int) -> list[dict]:
    db.session.expire_all()
    rows = db.session.execute(
        select(AuditEntry.details).where(
            AuditEntry.action == "security.not_found", AuditEntry.organization_id == org_id
        )
    ).scalars()
    return list(rows)


def test_probing_another_organisations_ids_is_journalled(
    client, make_org, make_user, make_token, make_armoire, store_file, contributor, armoire
):
    other_org = make_org("Organisation B")
    intruder = make_user("contributeur", org=other_org)
    secret = make_token(intruder)
    file = store_file(contributor, armoire)
    folder = Folder(organization_id=armoire.organization_id, armoire_id=armoire.id, name="Privé")
    db.session.add(folder)
    db.session.commit()
    own_armoire = make_armoire(other_org, "Chez B")

    assert client.get(f"/api/v1/fichiers/{file.id}", headers=bearer(secret)).status_code == 404
    assert client.get(f"/api/v1/fichiers/{file.id}/contenu", headers=bearer(secret)).status_code == 404
    assert client.get(f"/api/v1/armoires/{armoire.id}/fichiers", headers=bearer(secret)).status_code == 404
    listing = client.get(f"/api/v1/armoires/{own_armoire.id}/fichiers?folder={folder.id}", headers=bearer(secret))
    assert listing.status_code == 404
    assert upload(client, secret, armoire.id).status_code == 404
    assert [(d["target_type"], d["target_id"]) for d in probes(other_org.id)] == [
        ("fichiers", file.id),
        ("fichiers", file.id),
        ("armoires", armoire.id),
        ("dossiers", folder.id),
        ("armoires", armoire.id),
    ]
    assert db.session.execute(select(File.id)).scalars().all() == [file.id]  # the upload stored nothing


def test_ids_that_exist_nowhere_are_not_journalled(client, contributor, make_token, armoire):
    secret = make_token(contributor)
    assert client.get("/api/v1/fichiers/987654", headers=bearer(secret)).status_code == 404
    assert client.get("/api/v1/armoires/987654/fichiers", headers=bearer(secret)).status_code == 404
    assert probes(contributor.organization_id) == []


# ------------------------------------------------------------------ rate limits (L4)


def assert_rate_limited(response) -> None:
    body = problem(response, 429)
    assert body["type"] == "/problems/rate-limited"
    assert int(response.headers["Retry-After"]) > 0


def test_uploads_are_limited_to_60_a_minute_per_member(app_factory, make_user, org, make_token):
    client = app_factory(RATELIMIT_ENABLED=True).test_client()
    first, second = make_user("contributeur", org=org), make_user("contributeur", org=org)
    secret = make_token(first)
    # Cheap refused requests (415, before any body is read) count like uploads.
    for _ in range(60):
        assert client.post("/api/v1/fichiers", data=b"x", headers=bearer(secret)).status_code == 415
    assert_rate_limited(client.post("/api/v1/fichiers", data=b"x", headers=bearer(secret)))
    # Another token of the same member shares the budget; another member (same address) does not.
    assert_rate_limited(client.post("/api/v1/fichiers/1/versions", data=b"x", headers=bearer(make_token(first))))
    assert client.post("/api/v1/fichiers", data=b"x", headers=bearer(make_token(second))).status_code == 415
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200  # reads have their own budget


def test_every_api_call_counts_against_a_blueprint_limit(app_factory, make_user, org, make_token):
    client = app_factory(RATELIMIT_ENABLED=True, API_RATE_LIMIT="3/minute").test_client()
    member, other = make_user("contributeur", org=org), make_user("lecteur", org=org)
    secret = make_token(member)
    for _ in range(2):
        assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert client.post("/api/v1/fichiers", data=b"x", headers=bearer(secret)).status_code == 415
    assert_rate_limited(client.get("/api/v1/armoires", headers=bearer(secret)))
    assert_rate_limited(client.post("/api/v1/fichiers", data=b"x", headers=bearer(secret)))
    assert client.get("/api/v1/me", headers=bearer(make_token(other))).status_code == 200
    # Anonymous calls are counted per address.
    for _ in range(3):
        assert client.get("/api/v1/openapi.json").status_code == 200
    assert_rate_limited(client.get("/api/v1/openapi.json"))


def test_a_limited_answer_does_not_leak_whether_a_token_is_valid(app_factory):
    client = app_factory(RATELIMIT_ENABLED=True, API_RATE_LIMIT="2/minute").test_client()
    for _ in range(2):
        assert client.get("/api/v1/me", headers=bearer("cof_invalide")).status_code == 401
    assert_rate_limited(client.get("/api/v1/me", headers=bearer("cof_autre_invalide")))


# ------------------------------------------------------------------ token revocation (H2)


def test_revoke_user_tokens_revokes_only_that_members_live_tokens(client, make_user, org, make_token):
    member, other = make_user("contributeur", org=org), make_user("contributeur", org=org)
    secrets_ = [make_token(member), make_token(member)]
    already = make_token(member)
    services.revoke_token(services.find_live_token(already, clock.now()), Actor(org.id, member.id))
    db.session.commit()
    kept = make_token(other)
    assert services.revoke_user_tokens(member.id) == 2
    db.session.commit()
    for secret in [*secrets_, already]:
        assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(kept)).status_code == 200
    assert services.revoke_user_tokens(member.id) == 0


def test_a_password_change_ends_older_tokens(client, contributor, make_token):
    from portal.auth import services as accounts

    old = make_token(contributor)
    actor = Actor(contributor.organization_id, contributor.id)
    assert accounts.change_password(
        contributor, TEST_PASSWORD, "une toute nouvelle phrase 123", actor, keep_session_id=None
    )
    db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(old)).status_code == 401
    fresh = client.post(TOKEN_URL, json={"email": contributor.email, "password": "une toute nouvelle phrase 123"})
    assert fresh.status_code == 201
    assert client.get("/api/v1/me", headers=bearer(fresh.get_json()["token"])).status_code == 200


def test_a_password_reset_ends_older_tokens(client, contributor, make_token):
    from portal.auth import services as accounts

    old = make_token(contributor)
    reset = accounts.issue_token(contributor, "password_reset")
    db.session.commit()
    assert accounts.reset_password(reset, "encore une autre phrase 456", Actor(contributor.organization_id, None))
    db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(old)).status_code == 401


def test_a_reactivated_member_does_not_get_old_tokens_back(client, admin, contributor, make_token):
    from portal.users import services as users

    old = make_token(contributor)
    actor = Actor(admin.organization_id, admin.id)
    users.deactivate(contributor, actor)
    db.session.commit()
    users.reactivate(contributor, actor)
    db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(old)).status_code == 401


# ------------------------------------------------------------------ the journalled receipt promise


@pytest.mark.parametrize("flag", ["true", "false"])
def test_the_upload_journal_entry_carries_the_deletion_promise(client, contributor, make_token, armoire, flag):
    secret = make_token(contributor)
    created = upload(client, secret, armoire.id, delete_after_upload=flag)
    assert created.status_code == 201
    file_id = created.get_json()["file_id"]
    version = client.post(
        f"/api/v1/fichiers/{file_id}/versions",
        data={"delete_after_upload": flag, "file": (io.BytesIO(b"v2"), "v2.txt")},
        headers=bearer(secret),
        content_type="multipart/form-data",
    )
    assert version.status_code == 201
    db.session.expire_all()
    entries = db.session.execute(
        select(AuditEntry.action, AuditEntry.details)
        .where(AuditEntry.action.in_(["file.added", "file.modified"]))
        .order_by(AuditEntry.id)
    ).all()
    assert [action for action, _details in entries] == ["file.added", "file.modified"]
    assert all(details["delete_after_upload"] is (flag == "true") for _action, details in entries)
