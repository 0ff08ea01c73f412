from __future__ import annotations

import re

from portal.auth.models import User
from portal.extensions import db
from tests.auth.support import csrf_of, enable_totp, journal_actions, login, text, totp_now
from tests.conftest import TEST_PASSWORD

NEW_PASSWORD = "une toute nouvelle phrase"


def change_password(client, current, new, confirm=None, end_others=True):
    data = {
        "csrf_token": csrf_of(client, "/me"),
        "current_password": current,
        "password": new,
        "confirm": confirm or new,
    }
    if end_others:
        data["end_other_sessions"] = "y"
    return client.post("/me/password", data=data)


def test_profile_page_shows_account_and_2fa_status(reader_client, reader):
    page = text(reader_client.get("/me"))
    assert reader.email in page and "Inactive" in page and "Cette session" in page


def test_profile_update_name_and_language(reader_client, reader):
    response = reader_client.post(
        "/me", data={"csrf_token": csrf_of(reader_client, "/me"), "name": "Léa L.", "locale": "en"}
    )
    assert response.status_code == 303
    db.session.refresh(reader)
    assert reader.name == "Léa L." and reader.locale == "en"
    assert '<html lang="en">' in text(reader_client.get("/me"))
    bad = reader_client.post("/me", data={"csrf_token": csrf_of(reader_client, "/me"), "name": "", "locale": "xx"})
    assert bad.status_code == 422


def test_password_change_ends_other_sessions_only(app, make_user):
    user = make_user("lecteur")
    first, second = app.test_client(), app.test_client()
    login(first, user.email, TEST_PASSWORD)
    login(second, user.email, TEST_PASSWORD)
    assert change_password(first, "wrong current pw", NEW_PASSWORD).status_code == 422
    assert change_password(first, TEST_PASSWORD, "court").status_code == 422
    assert change_password(first, TEST_PASSWORD, NEW_PASSWORD, confirm="autre chose encore").status_code == 422
    assert change_password(first, TEST_PASSWORD, NEW_PASSWORD).status_code == 303
    assert first.get("/me").status_code == 200
    assert second.get("/me").status_code == 302
    assert "user.password_changed" in journal_actions(user.organization_id)
    assert login(app.test_client(), user.email, TEST_PASSWORD).status_code == 422
    assert login(app.test_client(), user.email, NEW_PASSWORD).status_code == 303


def test_password_change_can_keep_other_sessions(app, make_user):
    user = make_user("lecteur")
    first, second = app.test_client(), app.test_client()
    login(first, user.email, TEST_PASSWORD)
    login(second, user.email, TEST_PASSWORD)
    assert change_password(first, TEST_PASSWORD, NEW_PASSWORD, end_others=False).status_code == 303
    assert second.get("/me").status_code == 200


def test_password_reset_by_email(app, make_user, inbox, clock):
    user = make_user("lecteur")
    old = app.test_client()
    login(old, user.email, TEST_PASSWORD)
    client = app.test_client()
    token = csrf_of(client, "/auth/password/forgot")
    unknown = client.post("/auth/password/forgot", data={"csrf_token": token, "email": "personne@diallo.sn"})
    known = client.post("/auth/password/forgot", data={"csrf_token": token, "email": user.email.upper()})
    assert unknown.status_code == known.status_code == 200
    assert text(unknown).count("Si un compte existe") == text(known).count("Si un compte existe") == 1
    assert len(inbox.messages) == 1
    link = inbox.link_for(user.email, "/auth/password/reset/")
    form = client.get(link)
    assert form.status_code == 200
    weak = client.post(
        link, data={"csrf_token": csrf_of(client, link), "password": "password1234", "confirm": "password1234"}
    )
    assert weak.status_code == 422
    done = client.post(
        link, data={"csrf_token": csrf_of(client, link), "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert done.status_code == 303
    assert client.get(link).status_code == 404  # single use
    assert old.get("/me").status_code == 302  # sessions ended
    assert login(app.test_client(), user.email, NEW_PASSWORD).status_code == 303
    actions = journal_actions(user.organization_id)
    assert "user.password_reset_requested" in actions and "user.password_reset" in actions


def test_password_reset_link_expires(app, make_user, inbox, clock):
    user = make_user("lecteur")
    client = app.test_client()
    client.post(
        "/auth/password/forgot", data={"csrf_token": csrf_of(client, "/auth/password/forgot"), "email": user.email}
    )
    link = inbox.link_for(user.email, "/auth/password/reset/")
    clock.advance(minutes=61)
    assert client.get(link).status_code == 404


def test_password_reset_keeps_two_factor(app, login_as, make_user, inbox, clock):
    user = make_user("lecteur")
    _secret, _ = enable_totp(login_as(user), clock)
    client = app.test_client()
    client.post(
        "/auth/password/forgot", data={"csrf_token": csrf_of(client, "/auth/password/forgot"), "email": user.email}
    )
    link = inbox.link_for(user.email, "/auth/password/reset/")
    client.post(link, data={"csrf_token": csrf_of(client, link), "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    response = login(client, user.email, NEW_PASSWORD)
    assert response.headers["Location"].endswith("/auth/2fa/verify")


def test_recovery_codes_regeneration_asks_for_recent_proof(login_as, make_user, clock):
    user = make_user("lecteur")
    member = login_as(user)
    secret, old_codes = enable_totp(member, clock)
    clock.advance(minutes=11)
    token = csrf_of(member, "/me")
    asked = member.post("/me/2fa/recovery-codes", data={"csrf_token": token})
    assert asked.status_code == 401 and "reauth_code" in text(asked)
    clock.advance(seconds=30)
    done = member.post("/me/2fa/recovery-codes", data={"csrf_token": token, "reauth_code": totp_now(secret, clock)})
    assert done.status_code == 200
    new_codes = re.findall(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>", text(done))
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert "user.recovery_codes_regenerated" in journal_actions(user.organization_id)


def test_reauth_for_a_get_resumes_through_redirect(login_as, make_user, clock):
    user = make_user("lecteur")
    member = login_as(user)
    clock.advance(minutes=11)
    response = member.post(
        "/auth/reauth", data={"csrf_token": csrf_of(member, "/me"), "reauth_password": TEST_PASSWORD, "next": "/me"}
    )
    assert response.status_code == 303 and response.headers["Location"].endswith("/me")
    evil = member.post(
        "/auth/reauth",
        data={"csrf_token": csrf_of(member, "/me"), "reauth_password": TEST_PASSWORD, "next": "https://evil.example/"},
    )
    assert evil.headers["Location"].endswith("/")
    assert "evil" not in evil.headers["Location"]


def test_end_a_session_from_the_list(app, make_user):
    user = make_user("lecteur")
    first, second = app.test_client(), app.test_client()
    login(first, user.email, TEST_PASSWORD)
    login(second, user.email, TEST_PASSWORD)
    response = first.post("/me/sessions/end-others", data={"csrf_token": csrf_of(first, "/me")})
    assert response.status_code == 303
    assert second.get("/me").status_code == 302 and first.get("/me").status_code == 200
    assert "user.sessions_revoked" in journal_actions(user.organization_id)


def test_cannot_end_someone_elses_session(app, make_user, login_as, admin):
    from sqlalchemy import select

    from portal.auth.models import UserSession

    login_as(admin)
    admin_row = db.session.execute(select(UserSession).where(UserSession.user_id == admin.id)).scalar_one()
    colleague = login_as(make_user("lecteur", org=admin.organization))
    response = colleague.post(f"/me/sessions/{admin_row.id}/end", data={"csrf_token": csrf_of(colleague, "/me")})
    assert response.status_code == 404
    db.session.refresh(admin_row)
    assert admin_row.revoked_at is None


def test_inactive_session_user_is_refused(reader_client, reader):
    db.session.get(User, reader.id).active = False
    db.session.commit()
    assert reader_client.get("/me").status_code == 302


def test_reauth_with_an_email_code(login_as, make_user, inbox, clock):
    user = make_user("lecteur")
    user.two_factor_method = "email"
    db.session.commit()
    member = login_as(user)
    clock.advance(minutes=11)
    token = csrf_of(member, "/me")
    asked = member.post("/me/2fa/recovery-codes", data={"csrf_token": token})
    assert asked.status_code == 401 and "/auth/reauth/email" in text(asked)
    assert member.post("/auth/reauth/email", data={"csrf_token": token}).status_code == 204
    code = inbox.code_for(user.email)
    done = member.post("/me/2fa/recovery-codes", data={"csrf_token": token, "reauth_code": code})
    assert done.status_code == 200 and "recovery-codes" in text(done)
    clock.advance(minutes=11)
    replay = member.post("/me/2fa/recovery-codes", data={"csrf_token": token, "reauth_code": code})
    assert replay.status_code == 401
