from __future__ import annotations

from sqlalchemy import select

from portal.auth.models import LoginThrottle, User, UserSession
from portal.extensions import db
from tests.auth.support import csrf_of, journal_actions, login, text
from tests.conftest import TEST_PASSWORD


def session_cookie(client) -> str:
    cookie = client.get_cookie("coffre_session")
    return cookie.value if cookie else ""


def test_login_success_renews_session_and_is_journaled(client, make_user):
    user = make_user("lecteur")
    client.get("/auth/login")
    before = session_cookie(client)
    response = login(client, user.email, TEST_PASSWORD)
    assert response.status_code == 303
    assert session_cookie(client) != before
    assert client.get("/").status_code == 200
    row = db.session.execute(select(UserSession)).scalar_one()
    assert row.user_id == user.id and row.revoked_at is None and len(row.token_hash) == 64
    assert "user.login" in journal_actions(user.organization_id)


def test_wrong_password_and_unknown_email_give_the_same_answer(client, make_user):
    user = make_user("lecteur")
    wrong = login(client, user.email, "not the right password")
    unknown = login(client, "personne@diallo.sn", "not the right password")
    assert wrong.status_code == unknown.status_code == 422
    assert "Adresse e-mail ou mot de passe incorrect." in text(wrong)
    assert "Adresse e-mail ou mot de passe incorrect." in text(unknown)
    assert journal_actions(user.organization_id) == ["user.login_failed"]
    assert "user.login_failed" in journal_actions(None)


def test_login_error_in_english(client, make_user):
    user = make_user("lecteur")
    client.set_cookie("coffre_lang", "en")
    response = login(client, user.email, "not the right password")
    assert response.status_code == 422
    assert '<html lang="en">' in text(response)
    assert "Incorrect email address or password." in text(response)


def test_progressive_delay_after_repeated_failures(client, make_user, clock):
    user = make_user("lecteur")
    for _ in range(5):
        assert login(client, user.email, "wrong password!!").status_code == 422
    # Locked now, even with the right password; the answer says how long to wait.
    locked = login(client, user.email, TEST_PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) <= 30
    assert "Réessayez dans" in text(locked)
    assert "user.locked_out" in journal_actions(user.organization_id)
    clock.advance(seconds=31)
    assert login(client, user.email, "wrong password!!").status_code == 422
    # The sixth failure doubles the delay.
    again = login(client, user.email, TEST_PASSWORD)
    assert again.status_code == 429 and 31 < int(again.headers["Retry-After"]) <= 61
    clock.advance(seconds=61)
    assert login(client, user.email, TEST_PASSWORD).status_code == 303
    rows = db.session.execute(select(LoginThrottle)).scalars().all()
    assert rows and all(row.failures == 0 and row.locked_until is None for row in rows)


def test_brute_force_hits_the_rate_limit(app_factory, make_user):
    app = app_factory(RATELIMIT_ENABLED=True)
    client = app.test_client()
    email = make_user("lecteur").email
    db.session.commit()  # release SQLite's lock held by the fixture's app
    statuses = [login(client, email, f"wrong password {n}!!").status_code for n in range(11)]
    assert 429 in statuses
    limited = login(client, email, TEST_PASSWORD)
    assert limited.status_code == 429
    assert "Trop de tentatives" in text(limited)


def test_cookie_copied_before_logout_is_refused(client, make_user, app):
    user = make_user("lecteur")
    login(client, user.email, TEST_PASSWORD)
    copied = session_cookie(client)
    token = csrf_of(client, "/")
    response = client.post("/auth/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert "Clear-Site-Data" in response.headers
    thief = app.test_client()
    thief.set_cookie("coffre_session", copied)
    stolen = thief.get("/me")
    assert stolen.status_code == 302 and "/auth/login" in stolen.headers["Location"]
    assert "user.logout" in journal_actions(user.organization_id)


def test_planted_cookie_stays_anonymous(client, app, make_user):
    user = make_user("lecteur")
    attacker = app.test_client()
    attacker.get("/auth/login")
    planted = session_cookie(attacker)
    client.set_cookie("coffre_session", planted)
    login(client, user.email, TEST_PASSWORD)
    assert session_cookie(client) != planted
    attacker.set_cookie("coffre_session", planted)
    assert attacker.get("/me").status_code == 302


def test_idle_timeout(client, make_user, clock):
    user = make_user("lecteur")
    login(client, user.email, TEST_PASSWORD)
    clock.advance(minutes=29)
    assert client.get("/me").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/me")
    assert response.status_code == 302
    htmx = client.get("/me", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and "HX-Redirect" in htmx.headers


def test_absolute_timeout_despite_activity(client, make_user, clock):
    user = make_user("lecteur")
    login(client, user.email, TEST_PASSWORD)
    for _ in range(35):  # 11 h 40 of steady activity
        clock.advance(minutes=20)
        assert client.get("/me").status_code == 200
    clock.advance(minutes=21)
    assert client.get("/me").status_code == 302


def test_remember_me_outlives_idle_timeout_and_can_be_revoked(client, app, make_user, clock):
    user = make_user("lecteur")
    response = login(client, user.email, TEST_PASSWORD, remember="y")
    assert response.status_code == 303
    assert "Expires=" in response.headers["Set-Cookie"]
    clock.advance(hours=3)
    assert client.get("/me").status_code == 200
    clock.advance(hours=8)
    assert client.get("/me").status_code == 200
    other = app.test_client()
    login(other, user.email, TEST_PASSWORD)
    page = text(other.get("/me"))
    remembered = db.session.execute(select(UserSession).where(UserSession.remember.is_(True))).scalar_one()
    assert f"/me/sessions/{remembered.id}/end" in page
    other.post(f"/me/sessions/{remembered.id}/end", data={"csrf_token": csrf_of(other, "/me")})
    assert client.get("/me").status_code == 302


def test_remember_me_still_ends_after_twelve_hours(client, make_user, clock):
    user = make_user("lecteur")
    login(client, user.email, TEST_PASSWORD, remember="y")
    clock.advance(hours=12, seconds=1)
    assert client.get("/me").status_code == 302


def test_inactive_user_cannot_log_in(client, make_user):
    user = make_user("lecteur")
    user.active = False
    db.session.commit()
    assert login(client, user.email, TEST_PASSWORD).status_code == 422


def test_deactivation_ends_open_sessions(login_as, make_user, admin):
    member = make_user("lecteur", org=admin.organization)
    member_client = login_as(member)
    assert member_client.get("/").status_code == 200
    admin_client = login_as(admin)
    token = csrf_of(admin_client, "/users")
    assert admin_client.post(f"/users/{member.id}/deactivate", data={"csrf_token": token}).status_code == 303
    stale = member_client.get("/")
    assert stale.status_code == 302 and "/auth/login" in stale.headers["Location"]
    assert member_client.get("/me").status_code == 302
    assert db.session.get(User, member.id).active is False
