from __future__ import annotations

import re

from sqlalchemy import select

from portal.auth.models import EmailCode, LoginThrottle, RecoveryCode
from portal.extensions import db
from tests.auth.support import csrf_of, enable_totp, journal_actions, login, text, totp_now
from tests.conftest import TEST_PASSWORD, csrf_token_from


def verify(client, code):
    token = csrf_of(client, "/auth/login")
    return client.post("/auth/2fa/verify", data={"csrf_token": token, "code": code})


def logout(client):
    client.post("/auth/logout", data={"csrf_token": csrf_of(client, "/me")})


def test_enable_totp_then_login_needs_a_code_once(client, app, login_as, make_user, clock):
    user = make_user("contributeur")
    member = login_as(user)
    page = text(member.get("/auth/2fa/enable"))
    assert "<svg" in page and "data:" not in page
    assert "plus sûre" in page  # the page says the app is the stronger choice
    secret, codes = enable_totp(member, clock)
    db.session.refresh(user)
    assert user.two_factor_method == "totp"
    assert user.totp_secret_encrypted and secret not in user.totp_secret_encrypted
    assert db.session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).scalars().all()
    assert all(
        code.replace("-", "") not in r.code_hash
        for r in db.session.execute(select(RecoveryCode)).scalars()
        for code in codes
    )
    assert "user.2fa_enabled" in journal_actions(user.organization_id)

    clock.advance(seconds=30)
    response = login(client, user.email, TEST_PASSWORD)
    assert response.status_code == 303 and response.headers["Location"].endswith("/auth/2fa/verify")
    assert client.get("/me").status_code == 302  # the password alone opens nothing
    wrong = verify(client, "000000" if totp_now(secret, clock) != "000000" else "111111")
    assert wrong.status_code == 422 and "Code incorrect" in text(wrong)
    client.set_cookie("coffre_lang", "en")
    english = verify(client, "000000" if totp_now(secret, clock) != "000000" else "111111")
    assert "The code is incorrect, has already been used or has expired." in text(english)
    code = totp_now(secret, clock)
    assert verify(client, code).status_code == 303
    assert client.get("/me").status_code == 200
    assert journal_actions(user.organization_id)[-1] == "user.login"

    # The same code again, in a new login within the same 30 seconds: refused.
    other = app.test_client()
    login(other, user.email, TEST_PASSWORD)
    replay = verify(other, code)
    assert replay.status_code == 422
    assert "user.2fa_failed" in journal_actions(user.organization_id)


def test_old_totp_code_is_refused(client, login_as, make_user, clock):
    user = make_user("lecteur")
    secret, _codes = enable_totp(login_as(user), clock)
    clock.advance(minutes=5)
    login(client, user.email, TEST_PASSWORD)
    assert verify(client, totp_now(secret, clock, offset_steps=-3)).status_code == 422
    assert verify(client, totp_now(secret, clock, offset_steps=-1)).status_code == 303  # drift tolerated


def test_recovery_code_works_once(client, app, login_as, make_user, clock):
    user = make_user("lecteur")
    _secret, codes = enable_totp(login_as(user), clock)
    login(client, user.email, TEST_PASSWORD)
    assert verify(client, codes[0].lower()).status_code == 303
    assert "user.recovery_code_used" in journal_actions(user.organization_id)
    other = app.test_client()
    login(other, user.email, TEST_PASSWORD)
    assert verify(other, codes[0]).status_code == 422
    assert verify(other, codes[1]).status_code == 303


def enable_email(member, inbox, user):
    page = text(member.get("/auth/2fa/enable"))
    member.post("/auth/2fa/enable/email", data={"csrf_token": csrf_token_from(page)})
    code = inbox.code_for(user.email)
    return member.post("/auth/2fa/enable", data={"csrf_token": csrf_token_from(page), "method": "email", "code": code})


def test_email_code_two_factor(client, app, login_as, make_user, inbox, clock):
    user = make_user("lecteur")
    member = login_as(user)
    response = enable_email(member, inbox, user)
    assert response.status_code == 200 and len(re.findall(r"<code>", text(response))) == 10
    db.session.refresh(user)
    assert user.two_factor_method == "email"

    inbox.messages.clear()
    login(client, user.email, TEST_PASSWORD)
    first = inbox.code_for(user.email)
    # A code asked by one login attempt is useless in another.
    other = app.test_client()
    login(other, user.email, TEST_PASSWORD)
    second = inbox.code_for(user.email)
    if first != second:
        assert verify(other, first).status_code == 422
    # Asking for a new code voids the previous one.
    client.post("/auth/2fa/verify/email", data={"csrf_token": csrf_of(client, "/auth/2fa/verify")})
    third = inbox.code_for(user.email)
    if third != first:
        assert verify(client, first).status_code == 422
    assert verify(client, third).status_code == 303
    # Single use.
    logout(client)
    login(client, user.email, TEST_PASSWORD)
    assert verify(client, third).status_code == 422


def test_email_code_expires_after_ten_minutes(client, login_as, make_user, inbox, clock):
    user = make_user("lecteur")
    member = login_as(user)
    page = text(member.get("/auth/2fa/enable"))
    member.post("/auth/2fa/enable/email", data={"csrf_token": csrf_token_from(page)})
    code = inbox.code_for(user.email)
    clock.advance(minutes=10, seconds=1)
    late = member.post(
        "/auth/2fa/enable",
        # Ten minutes on, binding a factor also asks for the password again.
        data={"csrf_token": csrf_token_from(page), "method": "email", "code": code, "reauth_password": TEST_PASSWORD},
    )
    assert late.status_code == 422
    db.session.refresh(user)
    assert user.two_factor_method is None
    # At login, the code dies with the 10-minute login attempt it belongs to.
    enable_email(member, inbox, user)
    inbox.messages.clear()
    login(client, user.email, TEST_PASSWORD)
    code = inbox.code_for(user.email)
    clock.advance(minutes=10, seconds=1)
    response = verify(client, code)
    assert response.status_code == 303 and response.headers["Location"].endswith("/auth/login")
    assert client.get("/me").status_code == 302


def test_email_code_is_void_after_five_wrong_guesses(client, login_as, make_user, inbox, clock):
    user = make_user("lecteur")
    enable_email(login_as(user), inbox, user)
    inbox.messages.clear()
    login(client, user.email, TEST_PASSWORD)
    code = inbox.code_for(user.email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert verify(client, wrong).status_code == 422
    clock.advance(minutes=2)  # past the progressive delay the failures triggered
    assert verify(client, code).status_code == 422
    row = db.session.execute(select(EmailCode).where(EmailCode.purpose == "login")).scalar_one()
    assert row.used_at is not None


def test_org_requiring_2fa_leads_members_to_enrolment(client, make_org, make_user, clock):
    org = make_org("Exigeante", require_2fa=True)
    user = make_user("lecteur", org=org)
    login(client, user.email, TEST_PASSWORD)
    for path in ("/", "/me", "/users"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].endswith("/auth/2fa/enable")
    htmx = client.get("/me", headers={"HX-Request": "true"})
    assert htmx.headers.get("HX-Redirect", "").endswith("/auth/2fa/enable")
    page = text(client.get("/auth/2fa/enable"))
    assert "exige la double authentification" in page
    enable_totp(client, clock)
    assert client.get("/").status_code == 200


def test_disabling_2fa_needs_password_and_current_code(login_as, make_user, clock):
    user = make_user("lecteur")
    member = login_as(user)
    secret, _codes = enable_totp(member, clock)
    clock.advance(seconds=30)
    token = csrf_of(member, "/me")
    refused = member.post("/me/2fa/disable", data={"csrf_token": token, "password": TEST_PASSWORD, "code": "123456"})
    assert refused.status_code == 422
    refused = member.post(
        "/me/2fa/disable", data={"csrf_token": token, "password": "wrong password!", "code": totp_now(secret, clock)}
    )
    assert refused.status_code == 422
    clock.advance(seconds=30)
    done = member.post(
        "/me/2fa/disable", data={"csrf_token": token, "password": TEST_PASSWORD, "code": totp_now(secret, clock)}
    )
    assert done.status_code == 303
    db.session.refresh(user)
    assert user.two_factor_method is None and user.totp_secret_encrypted is None
    assert "user.2fa_disabled" in journal_actions(user.organization_id)


def test_pending_login_expires(client, login_as, make_user, clock):
    user = make_user("lecteur")
    secret, _ = enable_totp(login_as(user), clock)
    login(client, user.email, TEST_PASSWORD)
    clock.advance(minutes=11)
    response = verify(client, totp_now(secret, clock))
    assert response.status_code == 303 and response.headers["Location"].endswith("/auth/login")
    assert client.get("/me").status_code == 302


def test_totp_secret_is_encrypted_with_aes_gcm(app, make_user):
    from portal.security import totp

    user = make_user("lecteur")
    token = totp.encrypt_secret("JBSWY3DPEHPK3PXP", user.id)
    assert "JBSWY3DPEHPK3PXP" not in token
    assert totp.decrypt_secret(token, user.id) == "JBSWY3DPEHPK3PXP"
    import pytest
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        totp.decrypt_secret(token, user.id + 1)  # bound to its user


def test_verify_is_rate_limited(app_factory, make_user, smtp_server):
    from portal.security import totp

    app = app_factory(RATELIMIT_ENABLED=True)
    user = make_user("lecteur")
    user.two_factor_method = "totp"
    user.totp_secret_encrypted = totp.encrypt_secret(totp.new_secret(), user.id)
    email = user.email
    db.session.commit()
    client = app.test_client()
    login(client, email, TEST_PASSWORD)
    statuses = [verify(client, "000000").status_code for _ in range(11)]
    assert statuses[-1] == 429
    assert (
        db.session.execute(select(LoginThrottle.failures).where(LoginThrottle.client == "127.0.0.1")).scalar_one() >= 5
    )


def test_binding_a_factor_on_a_stale_session_asks_for_the_password(login_as, make_user, clock):
    """A borrowed session must not be enough to bind the borrower's authenticator (ASVS 7.5.1)."""
    user = make_user("admin")
    member = login_as(user)
    page = text(member.get("/auth/2fa/enable"))
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page).group(1)
    clock.advance(minutes=11)
    code = totp_now(secret, clock)
    asked = member.post("/auth/2fa/enable", data={"csrf_token": csrf_token_from(page), "method": "totp", "code": code})
    assert asked.status_code == 401 and 'name="reauth_password"' in text(asked)
    db.session.refresh(user)
    assert user.two_factor_method is None
