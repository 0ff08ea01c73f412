"""Throttling that cannot be turned against members, and answers that do not reveal accounts.

Failures are counted per (account, client address); an account-wide ceiling catches guesses
spread over many addresses without locking out an address the member already signed in from.
Known and unknown addresses get the same statuses and the same words.
"""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select

from portal.auth.models import User
from portal.extensions import db
from tests.auth.support import csrf_of, journal_actions, login, text, totp_now
from tests.conftest import TEST_PASSWORD

STRANGER = "203.0.113.7"
MEMBER = "198.51.100.20"
STRONG = "un cheval agrafe la batterie"


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def totp_member(make_user) -> tuple[User, str]:
    from portal.security import totp

    user = make_user("lecteur")
    secret = totp.new_secret()
    user.two_factor_method = "totp"
    user.totp_secret_encrypted = totp.encrypt_secret(secret, user.id)
    db.session.commit()
    return user, secret


def verify(client, code: str):
    return client.post("/auth/2fa/verify", data={"csrf_token": csrf_of(client, "/auth/2fa/verify"), "code": code})


def without_csrf(html: str) -> str:
    """The page without what differs between any two visitors (the session's CSRF token)."""
    return re.sub(r'"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}"', '"…"', html)


def retry_after_agrees(response) -> int:
    seconds = int(response.headers["Retry-After"])
    body = text(response)
    said = re.findall(r"(\d+) (?:secondes|seconds|minutes?)", body)
    assert said, body
    unit = re.search(r"\d+ (secondes|seconds|minutes?)", body).group(1)
    assert int(said[0]) * (60 if unit.startswith("minute") else 1) == seconds, (seconds, said)
    return seconds


def test_a_stranger_cannot_lock_a_member_out(app, make_user, clock):
    user, secret = totp_member(make_user)
    stranger = from_address(app, STRANGER)
    answers = [login(stranger, user.email, f"devinette {n}").status_code for n in range(300)]
    assert set(answers) == {422, 429} and answers[-1] == 429
    start = clock()
    member = from_address(app, MEMBER)
    assert login(member, user.email, TEST_PASSWORD).status_code == 303
    response = verify(member, totp_now(secret, clock))
    assert response.status_code == 303 and not response.headers["Location"].endswith("/auth/login")
    assert (clock() - start).total_seconds() < 2
    assert member.get("/me").status_code == 200
    # The stranger's address is still held back, right password or not.
    assert login(stranger, user.email, TEST_PASSWORD).status_code == 429


def test_days_of_guessing_from_one_address_never_lock_the_member_out(app, make_user, clock):
    user, secret = totp_member(make_user)
    stranger = from_address(app, STRANGER)
    for _ in range(400):  # every time the delay allows, for days
        login(stranger, user.email, "pas le bon mot de passe")
        clock.advance(hours=1, seconds=1)
    member = from_address(app, "192.0.2.44")  # never used before
    assert login(member, user.email, TEST_PASSWORD).status_code == 303
    assert verify(member, totp_now(secret, clock)).status_code == 303


def test_the_delay_still_holds_one_address_back(client, make_user, clock):
    user = make_user("lecteur")
    for _ in range(5):
        assert login(client, user.email, "wrong password!!").status_code == 422
    locked = login(client, user.email, TEST_PASSWORD)
    assert locked.status_code == 429
    assert retry_after_agrees(locked) == 30
    assert "user.locked_out" in journal_actions(user.organization_id)
    clock.advance(seconds=30)
    assert login(client, user.email, "wrong password!!").status_code == 422
    again = login(client, user.email, TEST_PASSWORD)
    assert again.status_code == 429 and retry_after_agrees(again) == 60
    clock.advance(seconds=60)
    assert login(client, user.email, TEST_PASSWORD).status_code == 303


def test_guesses_from_many_addresses_hit_the_account_ceiling_but_not_a_known_address(app, make_user, clock):
    from portal.auth import services

    user = make_user("lecteur")
    known = from_address(app, MEMBER)
    assert login(known, user.email, TEST_PASSWORD).status_code == 303
    addresses = services.ACCOUNT_CEILING // services.LOCK_AFTER_FAILURES
    for number in range(addresses):
        botnet = from_address(app, f"10.{number // 250}.{number % 250}.1")
        for _ in range(services.LOCK_AFTER_FAILURES):
            assert login(botnet, user.email, "mot de passe deviné").status_code == 422
    newcomer = from_address(app, "192.0.2.99")
    refused = login(newcomer, user.email, TEST_PASSWORD)
    assert refused.status_code == 429
    retry_after_agrees(refused)
    assert login(from_address(app, MEMBER), user.email, TEST_PASSWORD).status_code == 303
    clock.advance(seconds=services.ACCOUNT_LOCK_SECONDS)
    assert login(newcomer, user.email, TEST_PASSWORD).status_code == 303


def test_ipv6_addresses_of_one_network_share_a_counter(app, make_user):
    user = make_user("lecteur")
    for number in range(5):
        assert login(from_address(app, f"2001:db8:1:2::{number + 1:x}"), user.email, "devinette!").status_code == 422
    assert login(from_address(app, "2001:db8:1:2::ff"), user.email, TEST_PASSWORD).status_code == 429
    assert login(from_address(app, "2001:db8:1:3::1"), user.email, TEST_PASSWORD).status_code == 303


def test_login_answers_are_the_same_for_known_and_unknown_addresses(app, make_user):
    user = make_user("lecteur")
    known, unknown = from_address(app, STRANGER), from_address(app, MEMBER)
    for attempt in range(7):
        a = login(known, user.email, "mauvais mot de passe")
        b = login(unknown, "personne@example.test", "mauvais mot de passe")
        assert a.status_code == b.status_code, attempt
        assert a.headers.get("Retry-After") == b.headers.get("Retry-After")
        # The form echoes the address typed; everything else is the same.
        assert without_csrf(text(a)).replace(user.email, "X") == without_csrf(text(b)).replace(
            "personne@example.test", "X"
        )
    assert a.status_code == 429


def test_reset_answers_are_the_same_for_known_and_unknown_addresses(app, make_user, inbox):
    user = make_user("lecteur")
    answers = []
    for address in (user.email, "personne@example.test"):
        client = app.test_client()
        token = csrf_of(client, "/auth/password/forgot")
        response = client.post("/auth/password/forgot", data={"csrf_token": token, "email": address})
        answers.append((response.status_code, without_csrf(text(response))))
    assert answers[0] == answers[1]
    assert inbox.to(user.email) and not inbox.to("personne@example.test")


def register(client, email: str, org: str = "Cabinet Diallo", name: str = "Awa Diallo"):
    token = csrf_of(client, "/auth/register")
    return client.post(
        "/auth/register",
        data={"csrf_token": token, "organization_name": org, "name": name, "email": email, "password": STRONG},
    )


def test_registration_answers_the_same_for_a_taken_address_and_tells_its_owner(app, make_user, inbox):
    owner = make_user("admin", email="pris@diallo.sn")
    new, taken = app.test_client(), app.test_client()
    a, b = register(new, "nouvelle@diallo.sn"), register(taken, "Pris@Diallo.sn")
    assert a.status_code == b.status_code == 200
    assert without_csrf(text(a)).replace("nouvelle@diallo.sn", "X") == without_csrf(text(b)).replace(
        "pris@diallo.sn", "X"
    )
    assert "Vérifiez votre messagerie" in text(a)
    # Neither visitor is signed in, and nothing was created yet.
    for visitor in (new, taken):
        assert visitor.get("/me").status_code == 302
    assert db.session.execute(select(db.func.count()).select_from(User)).scalar_one() == 1
    # The owner is told, with no way in for the visitor.
    warning = inbox.last_to("pris@diallo.sn")
    assert "/auth/password/forgot" in inbox.body(warning) and "/auth/register/" not in inbox.body(warning)
    assert db.session.get(User, owner.id).organization.name != "Cabinet Diallo"


def test_registration_completes_from_the_mailbox(app, inbox):
    visitor = app.test_client()
    assert register(visitor, "awa@diallo.sn").status_code == 200
    link = inbox.link_for("awa@diallo.sn", "/auth/register/")
    page = visitor.get(link)
    assert page.status_code == 200  # a button: a mail scanner's GET creates nothing
    assert db.session.execute(select(User)).first() is None
    # The link works from any browser (the one that reads the mail).
    reader = app.test_client()
    done = reader.post(link, data={"csrf_token": csrf_of(reader, link)})
    assert done.status_code == 303
    user = db.session.execute(select(User).where(User.email == "awa@diallo.sn")).scalar_one()
    assert user.role == "admin" and user.email_confirmed_at is not None
    assert user.organization.name == "Cabinet Diallo" and user.organization.require_2fa
    assert journal_actions(user.organization_id) == ["organization.created", "user.registered", "user.login"]
    assert reader.get("/").headers["Location"].endswith("/auth/2fa/enable")
    late = app.test_client()
    assert late.post(link, data={"csrf_token": csrf_of(late, "/auth/login")}).status_code == 404  # single use
    assert login(app.test_client(), "awa@diallo.sn", STRONG).status_code == 303


def test_a_registration_link_for_an_address_taken_meanwhile_creates_nothing(app, make_user, inbox):
    visitor = app.test_client()
    register(visitor, "awa@diallo.sn")
    link = inbox.link_for("awa@diallo.sn", "/auth/register/")
    make_user("admin", email="awa@diallo.sn")
    reader = app.test_client()
    assert reader.post(link, data={"csrf_token": csrf_of(reader, "/auth/login")}).status_code == 404
    assert db.session.execute(select(db.func.count()).select_from(User)).scalar_one() == 1


@pytest.fixture
def limited_app(app_factory, smtp_server, clock, make_user):
    # Built last: the limiter is one object, and the latest app's setting is the one it keeps.
    from tests.auth.support import account_config

    app = app_factory(**account_config(smtp_server[1], clock, RATELIMIT_ENABLED=True))
    with app.app_context():
        yield app


def test_retry_after_and_message_agree_for_the_address_limit(limited_app, make_user):
    client = limited_app.test_client()
    email = make_user("lecteur").email
    db.session.commit()
    answers = [login(client, f"x{n}-{email}", "mauvais mot de passe") for n in range(11)]
    assert answers[-1].status_code == 429
    # The limiter's reset time is a whole second: a one-minute window may end 61 s from now.
    assert 0 < retry_after_agrees(answers[-1]) <= 61


def test_retry_after_and_message_agree_for_the_account_delay_under_the_limiter(limited_app, make_user):
    client = limited_app.test_client()
    email = make_user("lecteur").email
    db.session.commit()
    for _ in range(5):
        login(client, email, "mauvais mot de passe")
    locked = login(client, email, TEST_PASSWORD)
    assert locked.status_code == 429
    retry_after_agrees(locked)


def test_the_api_password_grant_cannot_be_turned_against_a_member(app, make_user, clock):
    user, secret = totp_member(make_user)
    stranger = from_address(app, STRANGER)
    for n in range(50):
        stranger.post("/api/v1/auth/token", json={"email": user.email, "password": f"devinette {n}"})
    refused = stranger.post("/api/v1/auth/token", json={"email": user.email, "password": TEST_PASSWORD})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0 and refused.headers["Retry-After"] in refused.get_json()["detail"]
    member = from_address(app, MEMBER)
    body = {"email": user.email, "password": TEST_PASSWORD, "code": pyotp.TOTP(secret).at(clock())}
    assert member.post("/api/v1/auth/token", json=body).status_code == 201
