"""Every single-use credential has exactly one winner under real concurrency.

Real threads released together by a barrier, each request in its own app context and
database session, against the real database. The races these tests look for exist on
PostgreSQL (READ COMMITTED, row locks); SQLite's ``BEGIN IMMEDIATE`` serialises whole
write transactions, so on SQLite the tests still check the logic but cannot show a race.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select

from portal.auth.models import EmailCode, RecoveryCode, User, UserSession
from portal.database import write_transaction
from portal.extensions import db
from tests.auth.support import csrf_of, enable_totp, login, text, totp_now
from tests.conftest import TEST_PASSWORD, csrf_token_from, database_backend

THREADS = 8
NEW_PASSWORD = "une phrase de passe solide"


def race(count: int, prepare: Callable[[int], Callable[[], object]]) -> list[object]:
    """Prepare ``count`` calls (outside the race), then run them all at once."""
    db.session.commit()  # the test's own transaction must not hold a lock during the race
    calls = [prepare(number) for number in range(count)]
    db.session.commit()
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(number: int) -> None:
        barrier.wait()
        try:
            results[number] = calls[number]()
        except Exception as exc:
            results[number] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(isinstance(result, Exception) for result in results), results
    return results


def statuses(responses: list[object]) -> list[int]:
    return sorted(response.status_code for response in responses)  # type: ignore[attr-defined]


def logged_in(responses: list[object]) -> int:
    """How many answers opened a session: a loser is refused (422, 429) or sent back to login."""
    return sum(r.status_code == 303 and not r.headers["Location"].endswith("/auth/login") for r in responses)


def share_session(app, source) -> Callable[[], object]:
    """A new client holding the same session cookie as ``source`` (the same browser)."""
    cookie = source.get_cookie(app.config["SESSION_COOKIE_NAME"])
    twin = app.test_client()
    twin.set_cookie(cookie.key, cookie.value)
    return twin


def totp_user(make_user, login_as, clock) -> tuple[User, str, list[str]]:
    user = make_user("lecteur")
    secret, codes = enable_totp(login_as(user), clock)
    clock.advance(seconds=30)  # past the enrolment's step
    return user, secret, codes


def pending_logins(app, email: str, count: int) -> list:
    clients = []
    for _ in range(count):
        client = app.test_client()
        assert login(client, email, TEST_PASSWORD).status_code == 303
        clients.append(client)
    return clients


def post_code(client, code: str) -> Callable[[], object]:
    token = csrf_of(client, "/auth/2fa/verify")
    return lambda: client.post("/auth/2fa/verify", data={"csrf_token": token, "code": code})


def test_one_totp_step_logs_in_once(app, make_user, login_as, clock):
    user, secret, _codes = totp_user(make_user, login_as, clock)
    clients = pending_logins(app, user.email, THREADS)
    code = totp_now(secret, clock)
    results = race(THREADS, lambda n: post_code(clients[n], code))
    assert logged_in(results) == 1
    assert (
        db.session.execute(
            select(db.func.count()).where(UserSession.user_id == user.id, UserSession.mfa_pending.is_(False))
        ).scalar_one()
        == 2
    )  # the enrolment's session and one winner


def test_totp_enrolment_code_binds_the_factor_once(app, make_user, login_as, clock):
    user = make_user("lecteur")
    member = login_as(user)
    page = text(member.get("/auth/2fa/enable"))
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page).group(1)
    code = totp_now(secret, clock)

    def prepare(number: int) -> Callable[[], object]:
        # One session each: requests of one session queue up behind its row's lock.
        other = login_as(user)
        token = csrf_token_from(text(other.get("/auth/2fa/enable")))
        return lambda: other.post("/auth/2fa/enable", data={"csrf_token": token, "method": "totp", "code": code})

    results = race(THREADS, prepare)
    # The winner shows recovery codes; a loser is refused, or finds the factor already active.
    shown = [re.findall(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>", text(r)) for r in results]
    assert sorted(len(codes) for codes in shown) == [0] * (THREADS - 1) + [10]
    assert db.session.execute(select(db.func.count()).where(RecoveryCode.user_id == user.id)).scalar_one() == 10


def test_a_recovery_code_logs_in_once(app, make_user, login_as, clock):
    user, _secret, codes = totp_user(make_user, login_as, clock)
    clients = pending_logins(app, user.email, THREADS)
    results = race(THREADS, lambda n: post_code(clients[n], codes[0]))
    assert logged_in(results) == 1
    used = db.session.execute(
        select(db.func.count()).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_not(None))
    ).scalar_one()
    assert used == 1


def login_code_session(app, make_user, login_as, inbox):
    from tests.auth.test_two_factor import enable_email

    user = make_user("lecteur")
    assert enable_email(login_as(user), inbox, user).status_code == 200
    inbox.messages.clear()
    client = app.test_client()
    assert login(client, user.email, TEST_PASSWORD).status_code == 303
    return user, client, inbox.code_for(user.email)


def test_an_email_code_logs_in_once(app, make_user, login_as, inbox):
    _user, client, code = login_code_session(app, make_user, login_as, inbox)
    token = csrf_of(client, "/auth/2fa/verify")

    def prepare(number: int) -> Callable[[], object]:
        twin = share_session(app, client)
        return lambda: twin.post("/auth/2fa/verify", data={"csrf_token": token, "code": code})

    results = race(THREADS, prepare)
    assert logged_in(results) == 1


@pytest.mark.parametrize("guesses", [3, 5])
def test_concurrent_wrong_email_codes_all_count(app, make_user, login_as, inbox, guesses):
    """N concurrent wrong guesses count N attempts; at the limit the code is void."""
    from portal.auth import services

    user, _client, code = login_code_session(app, make_user, login_as, inbox)
    row = db.session.execute(select(EmailCode).where(EmailCode.purpose == "login")).scalar_one()
    binding, user_id = row.binding, user.id
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    def prepare(number: int) -> Callable[[], object]:
        def guess() -> bool:
            with app.app_context(), write_transaction():
                member = db.session.get(User, user_id)
                accepted = services.verify_email_code(member, "login", binding, wrong)
                db.session.commit()
                return accepted

        return guess

    assert race(guesses, prepare) == [False] * guesses
    db.session.refresh(row)
    assert row.attempts == guesses
    assert (row.used_at is not None) is (guesses >= services.EMAIL_CODE_MAX_ATTEMPTS)
    if row.used_at is not None:
        assert services.verify_email_code(db.session.get(User, user_id), "login", binding, code) is False


def test_a_reset_link_changes_the_password_once(app, make_user, inbox):
    user = make_user("lecteur")
    client = app.test_client()
    client.post(
        "/auth/password/forgot", data={"csrf_token": csrf_of(client, "/auth/password/forgot"), "email": user.email}
    )
    link = inbox.link_for(user.email, "/auth/password/reset/")

    def prepare(number: int) -> Callable[[], object]:
        visitor = app.test_client()
        token = csrf_of(visitor, link)
        return lambda: visitor.post(
            link,
            data={"csrf_token": token, "password": f"{NEW_PASSWORD} {number}", "confirm": f"{NEW_PASSWORD} {number}"},
        )

    results = race(THREADS, prepare)
    assert statuses(results) == [303] + [404] * (THREADS - 1)


def test_an_invitation_is_accepted_once(app, admin_client, inbox):
    token = csrf_of(admin_client, "/users")
    admin_client.post(
        "/users/invite", data={"csrf_token": token, "email": "kadi@diallo.sn", "name": "Kadi", "role": "lecteur"}
    )
    link = inbox.link_for("kadi@diallo.sn", "/auth/invitation/")

    def prepare(number: int) -> Callable[[], object]:
        visitor = app.test_client()
        csrf_token = csrf_of(visitor, link)
        return lambda: visitor.post(
            link,
            data={
                "csrf_token": csrf_token,
                "name": f"Kadi {number}",
                "password": f"{NEW_PASSWORD} {number}",
                "confirm": f"{NEW_PASSWORD} {number}",
            },
        )

    results = race(THREADS, prepare)
    assert statuses(results) == [303] + [404] * (THREADS - 1)


def test_an_email_confirmation_token_is_used_once(app, make_user):
    from portal.audit.context import Actor
    from portal.auth import services

    user = make_user("lecteur")
    token = services.issue_token(user, "email_confirm")

    def prepare(number: int) -> Callable[[], object]:
        def confirm() -> bool:
            with app.app_context(), write_transaction():
                done = services.confirm_email(token, Actor(None, None, "127.0.0.1", None)) is not None
                db.session.commit()
                return done

        return confirm

    assert sorted(race(THREADS, prepare)) == [False] * (THREADS - 1) + [True]


@pytest.mark.skipif(database_backend() != "postgresql", reason="a race needs concurrent writers (PostgreSQL)")
def test_races_really_overlap_on_postgresql(app, make_user):
    """Guard against a harness that runs the threads one after the other."""
    from sqlalchemy import text as sql

    make_user("lecteur")
    seen: list[int] = []

    def prepare(number: int) -> Callable[[], object]:
        def probe() -> None:
            with app.app_context():
                seen.append(
                    db.session.execute(sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'")).scalar_one()
                )
                db.session.execute(sql("SELECT pg_sleep(0.3)"))
                db.session.rollback()

        return probe

    race(4, prepare)
    assert max(seen) >= 2


def test_concurrent_login_failures_all_count(app):
    """The (account, client) and account-wide counters are incremented in SQL, first row included."""
    from portal.auth import clock, services
    from portal.auth.models import LoginThrottle

    def prepare(number: int) -> Callable[[], object]:
        def fail() -> None:
            with app.app_context(), write_transaction():
                services.register_failure("cible@example.test", clock.now(), "203.0.113.9")
                db.session.commit()

        return fail

    race(THREADS, prepare)
    rows = {row.client: row for row in db.session.execute(select(LoginThrottle)).scalars()}
    assert rows["203.0.113.9"].failures == THREADS
    assert rows["*"].failures == services.LOCK_AFTER_FAILURES  # one client counts five at most
    assert rows["203.0.113.9"].locked_until is not None
