"""The web baseline: layout, HTMX negotiation, errors, security headers, CSRF, language."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import csrf

HX = {"HX-Request": "true"}


def test_home_page_is_french_by_default_with_the_layout(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="fr">' in html
    assert "Se connecter" in html
    assert 'hx-history="false"' in html
    assert '"X-CSRFToken": "' in html


def test_member_home_shows_organisation_user_and_armoires(admin_client, admin):
    html = admin_client.get("/").get_data(as_text=True)
    assert admin.name in html
    assert admin.organization.name in html
    assert "Aucune armoire" in html


def test_an_empty_home_offers_the_create_button_to_whoever_may_create(admin_client, reader_client):
    admin_home = admin_client.get("/").get_data(as_text=True)
    assert '<a role="button" href="/armoires#nouvelle-armoire">' in admin_home
    # The target is a visible form, not a collapsed disclosure.
    armoires = admin_client.get("/armoires").get_data(as_text=True)
    assert 'id="nouvelle-armoire"' in armoires and "<details>" not in armoires.split('id="nouvelle-armoire"')[1][:200]
    reader_home = reader_client.get("/").get_data(as_text=True)
    assert "nouvelle-armoire" not in reader_home and "un administrateur de votre organisation" in reader_home


@pytest.mark.parametrize("path", ["/", "/auth/login", "/page-qui-n-existe-pas", "/api/v1/inconnu"])
def test_security_headers_on_every_response(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # development: no HTTPS assumed


def test_session_cookie_is_httponly_and_samesite_lax(client):
    cookie = client.get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_authenticated_pages_are_not_cached(admin_client, client):
    assert admin_client.get("/").headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/").headers.get("Cache-Control", "")


def test_no_page_loads_anything_from_another_origin(admin_client):
    html = admin_client.get("/").get_data(as_text=True)
    external = re.findall(r'(?:src|href|action)="((?:https?:)?//[^"]*)"', html)
    assert external == []


def test_not_found_is_a_page_a_fragment_or_a_problem(client):
    page = client.get("/nulle-part")
    assert page.status_code == 404 and "<html" in page.get_data(as_text=True)
    assert "HX-Request" in page.headers["Vary"]

    fragment = client.get("/nulle-part", headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 404 and "<html" not in body and "Introuvable" in body and "404 ·" not in body

    boosted = client.get("/nulle-part", headers={**HX, "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)

    restore = client.get("/nulle-part", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)

    problem = client.get("/api/v1/nulle-part")
    assert problem.status_code == 404
    assert problem.mimetype == "application/problem+json"
    assert problem.get_json()["status"] == 404


def test_unexpected_error_is_a_generic_500_without_details(app_factory):
    app = app_factory(PROPAGATE_EXCEPTIONS=False)

    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internal detail /etc/passwd")

    boom.__coffre_public__ = True
    response = app.test_client().get("/boom")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Quelque chose s'est mal passé de notre côté" in body
    assert "secret internal detail" not in body and "Traceback" not in body


def test_state_change_without_csrf_token_is_refused(client):
    response = client.post("/langue", data={"language": "en"})
    assert response.status_code == 400
    assert "coffre_lang" not in response.headers.get("Set-Cookie", "")


def test_htmx_sends_the_csrf_token_in_a_header(client):
    token = csrf(client)
    response = client.post("/langue", data={"language": "en"}, headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 303


def test_language_switch_persists_in_a_cookie(client):
    token = csrf(client)
    response = client.post("/langue", data={"language": "en", "next": "/auth/login", "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == "/auth/login"
    html = client.get("/auth/login").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Sign in" in html


def test_language_choice_is_saved_on_the_member(admin_client, admin):
    from portal.auth.models import User
    from portal.extensions import db

    token = csrf(admin_client)
    admin_client.post("/langue", data={"language": "en", "csrf_token": token})
    db.session.expire_all()
    assert db.session.get(User, admin.id).locale == "en"


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example", "https:evil", "/\\evil", "javascript:x"]
)
def test_language_switch_never_redirects_off_site(client, target):
    token = csrf(client)
    response = client.post("/langue", data={"language": "fr", "next": target, "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_unknown_language_is_ignored(client):
    token = csrf(client)
    response = client.post("/langue", data={"language": "de", "csrf_token": token})
    assert "coffre_lang" not in response.headers.get("Set-Cookie", "")


def test_expired_session_on_htmx_request_redirects_the_whole_page(app_factory, admin, login_as):
    app = app_factory(SESSION_IDLE_MINUTES=0)
    client = app.test_client()
    from portal.auth.sessions import open_session_for

    with client.session_transaction() as session:
        open_session_for(admin, session)
        session["seen_at"] = int(time.time()) - 120
    response = client.get("/", headers=HX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/auth/login")
    assert "<form" not in response.get_data(as_text=True)


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
