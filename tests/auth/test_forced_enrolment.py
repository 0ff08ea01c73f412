"""A member whose organisation requires 2FA can enrol, whichever factor and however old the proof."""

from __future__ import annotations

import pytest

from portal.extensions import db
from tests.auth.support import csrf_of, text
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def forced(make_org, make_user, login_as):
    org = make_org("Exigeante", require_2fa=True)
    user = make_user("lecteur", org=org)
    return user, login_as(user)


def test_email_code_enrolment_sends_a_code_when_2fa_is_required(forced, inbox):
    user, member = forced
    token = csrf_of(member, "/auth/2fa/enable")
    response = member.post("/auth/2fa/enable/email", data={"csrf_token": token})
    assert response.status_code == 200, response.headers.get("Location")
    assert "Code envoyé à" in text(response)
    assert 'id="dev-email-code"' not in text(response)  # SMTP is configured: the code is only mailed
    code = inbox.code_for(user.email)
    done = member.post("/auth/2fa/enable", data={"csrf_token": token, "method": "email", "code": code})
    assert done.status_code == 200 and "codes de secours" in text(done).lower()
    db.session.refresh(user)
    assert user.two_factor_method == "email"
    assert member.get("/me").status_code == 200


def test_stale_proof_on_forced_enrolment_asks_once_then_resumes(forced, clock):
    _user, member = forced
    clock.advance(minutes=11)
    asked = member.get("/auth/2fa/enable")
    assert asked.status_code == 401 and 'name="reauth_password"' in text(asked)
    token = csrf_of(member, "/auth/2fa/enable")

    wrong = member.post(
        "/auth/reauth", data={"csrf_token": token, "next": "/auth/2fa/enable", "reauth_password": "not my password!"}
    )
    assert wrong.status_code == 401 and "Mot de passe ou code incorrect" in text(wrong)

    right = member.post(
        "/auth/reauth", data={"csrf_token": token, "next": "/auth/2fa/enable", "reauth_password": TEST_PASSWORD}
    )
    assert right.status_code == 303 and right.headers["Location"].endswith("/auth/2fa/enable")
    page = member.get("/auth/2fa/enable")
    assert page.status_code == 200 and 'id="totp-secret"' in text(page)


def test_stale_proof_on_the_send_code_button_resumes_the_send(forced, inbox, clock):
    user, member = forced
    token = csrf_of(member, "/auth/2fa/enable")
    clock.advance(minutes=11)
    asked = member.post("/auth/2fa/enable/email", data={"csrf_token": token})
    assert asked.status_code == 401 and not inbox.to(user.email)
    resumed = member.post("/auth/2fa/enable/email", data={"csrf_token": token, "reauth_password": TEST_PASSWORD})
    assert resumed.status_code == 200 and "Code envoyé à" in text(resumed)
    assert inbox.code_for(user.email)


def test_a_member_who_must_enrol_can_still_switch_language_and_log_out(forced):
    _user, member = forced
    token = csrf_of(member, "/auth/2fa/enable")
    switched = member.post("/langue", data={"csrf_token": token, "language": "en", "next": "/auth/2fa/enable"})
    assert switched.status_code == 303 and switched.headers["Location"].endswith("/auth/2fa/enable")
    assert "Turn on two-factor authentication" in text(member.get("/auth/2fa/enable"))
    out = member.post("/auth/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["Location"].endswith("/auth/login")
    assert member.get("/me").status_code == 302


def test_the_rest_of_the_portal_stays_closed_until_enrolment(forced):
    _user, member = forced
    for path in ("/", "/me", "/auth/dev/outbox", "/users"):
        response = member.get(path)
        assert response.status_code == 303 and response.headers["Location"].endswith("/auth/2fa/enable"), path
