"""Every API route × role × tenant, and the OpenAPI document against the URL map."""

from __future__ import annotations

import io
import re

import pytest


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(app, org, make_org, make_user, make_token, make_armoire, store_file):
    """Org A with a stored file; a member of org B; tokens for each role."""
    admin = make_user("admin", org=org)
    armoire = make_armoire(org)
    file = store_file(admin, armoire)
    other = make_user("admin", org=make_org("Organisation B"))
    tokens = {role: make_token(make_user(role, org=org)) for role in ("admin", "contributeur", "lecteur")}
    tokens["other_org"] = make_token(other)
    return {"armoire": armoire.id, "file": file.id, "tokens": tokens}


def calls(world):
    a, f = world["armoire"], world["file"]
    upload = {
        "data": {"armoire_id": str(a), "file": (io.BytesIO(b"x"), "x.txt")},
        "content_type": "multipart/form-data",
    }
    version = {"data": {"file": (io.BytesIO(b"y"), "x.txt")}, "content_type": "multipart/form-data"}
    # (method, path, kwargs, {role: expected status}); roles not listed expect "ok".
    return [
        ("get", "/api/v1/me", {}, {}),
        ("get", "/api/v1/armoires", {}, {}),
        ("get", f"/api/v1/armoires/{a}/fichiers", {}, {"other_org": 404}),
        ("get", f"/api/v1/fichiers/{f}", {}, {"other_org": 404}),
        ("get", f"/api/v1/fichiers/{f}/contenu", {}, {"other_org": 404}),
        ("get", f"/api/v1/fichiers/{f}/versions", {}, {"other_org": 404}),
        ("post", f"/api/v1/fichiers/{f}/versions", version, {"lecteur": 403, "other_org": 404}),
        ("post", "/api/v1/fichiers", upload, {"lecteur": 403, "other_org": 404}),
        ("delete", f"/api/v1/fichiers/{f}", {}, {"lecteur": 403, "other_org": 404}),
    ]


@pytest.mark.parametrize("role", ["admin", "contributeur", "lecteur", "other_org", "anonymous"])
def test_role_and_tenant_matrix(client, world, role):
    for method, path, kwargs, expected in calls(world):
        headers = {} if role == "anonymous" else bearer(world["tokens"][role])
        kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
        if "data" in kwargs and "file" in kwargs["data"]:
            kwargs["data"]["file"] = (io.BytesIO(b"x"), "x.txt")
        response = getattr(client, method)(path, headers=headers, **kwargs)
        want = 401 if role == "anonymous" else expected.get(role, "ok")
        if want == "ok":
            assert response.status_code < 300, (role, method, path, response.get_data(as_text=True))
        else:
            assert response.status_code == want, (role, method, path, response.status_code)
            assert response.mimetype == "application/problem+json"


def test_revoke_token_route_for_each_role(client, world):
    for role, secret in world["tokens"].items():
        assert client.delete("/api/v1/auth/token", headers=bearer(secret)).status_code == 204, role


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.removeprefix("/api/v1"))


def test_openapi_lists_exactly_the_blueprint_routes(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (path, method) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    implemented = {
        (_openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == implemented
    for item in document["paths"].values():
        for operation in (op for key, op in item.items() if key != "parameters"):
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"]


def test_every_api_view_declares_a_permission(app):
    from portal.security.permissions import view_permission

    for endpoint, view in app.view_functions.items():
        if endpoint.startswith(("api.", "api_tokens.")):
            assert view_permission(view) is not None, endpoint
