"""The daily sweep removes expired bookkeeping rows and nothing still in use."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from portal.audit.models import RecentView
from portal.auth import housekeeping
from portal.auth.jobs import sweep_expired_bookkeeping
from portal.auth.models import AccountToken, EmailCode, LoginThrottle, PendingRegistration, UserSession
from portal.database import utcnow
from portal.extensions import db
from portal.scheduler import JOBS, run_job
from tests.api.conftest import make_armoire, store_file  # noqa: F401  (fixtures)


def _ids(model) -> set[int]:
    return set(db.session.execute(select(model.id)).scalars())


def test_the_sweep_keeps_what_is_live_and_removes_what_expired(app, admin, make_armoire, store_file):  # noqa: F811
    now = utcnow()
    long_ago, recently = now - timedelta(days=60), now - timedelta(minutes=5)
    org_id, user_id = admin.organization_id, admin.id
    file = store_file(admin, make_armoire(admin.organization), "a.txt", b"a")

    def session(token: str, **fields) -> UserSession:
        return UserSession(organization_id=org_id, user_id=user_id, token_hash=token * 64, **fields)

    old_session = session("a", auth_at=long_ago, last_seen_at=long_ago, created_at=long_ago)
    revoked_long_ago = session("b", revoked_at=long_ago)
    live = session("c", auth_at=recently, last_seen_at=recently)
    revoked_just_now = session("d", revoked_at=recently)  # its owner's stale cookie still meets it

    def code(expires) -> EmailCode:
        return EmailCode(user_id=user_id, purpose="login", binding="x" * 64, code_hash="y" * 64, expires_at=expires)

    old_code, fresh_code = code(long_ago), code(now + timedelta(minutes=5))

    def token(suffix: str, purpose: str, **fields) -> AccountToken:
        return AccountToken(user_id=user_id, purpose=purpose, token_hash=suffix * 64, **fields)

    spent_reset = token("e", "reset", expires_at=long_ago, used_at=long_ago)
    live_reset = token("f", "reset", expires_at=now + timedelta(hours=1))
    old_invitation = token("g", "invitation", expires_at=long_ago)  # shown as expired, with "resend"

    def throttle(client: str, **fields) -> LoginThrottle:
        return LoginThrottle(account_key="k" * 64, client=client, failures=3, **fields)

    stale = throttle("10.0.0.1", updated_at=long_ago)
    still_locked = throttle("10.0.0.2", updated_at=long_ago, locked_until=now + timedelta(minutes=5))
    trusted_client = throttle("10.0.0.3", updated_at=long_ago, succeeded_at=now - timedelta(days=3))
    active = throttle("10.0.0.4", updated_at=recently)

    def registration(suffix: str, expires) -> PendingRegistration:
        return PendingRegistration(
            token_hash=suffix * 64,
            email=f"{suffix}@x.sn",
            organization_name="O",
            name="N",
            password_hash="h",
            expires_at=expires,
        )

    old_registration, waiting = registration("h", long_ago), registration("i", now + timedelta(hours=1))
    db.session.add_all(
        [
            old_session,
            revoked_long_ago,
            live,
            revoked_just_now,
            old_code,
            fresh_code,
            spent_reset,
            live_reset,
            old_invitation,
            stale,
            still_locked,
            trusted_client,
            active,
            old_registration,
            waiting,
        ]
    )
    db.session.add(RecentView(organization_id=org_id, user_id=user_id, file_id=file.id, viewed_at=long_ago))
    db.session.commit()
    gone = {
        name: row.id
        for name, row in [
            ("session", old_session),
            ("code", old_code),
            ("reset", spent_reset),
            ("throttle", stale),
            ("registration", old_registration),
        ]
    }
    sessions_before = _ids(UserSession) - {old_session.id, revoked_long_ago.id}

    swept = housekeeping.sweep(now)
    db.session.commit()

    assert swept == housekeeping.Swept(
        sessions=2, email_codes=1, account_tokens=1, login_throttles=1, registrations=1, recent_views=1
    )
    assert _ids(UserSession) == sessions_before
    assert _ids(EmailCode) >= {fresh_code.id} and gone["code"] not in _ids(EmailCode)
    assert live_reset.id in _ids(AccountToken) and old_invitation.id in _ids(AccountToken)
    assert gone["reset"] not in _ids(AccountToken)
    assert _ids(LoginThrottle) >= {still_locked.id, trusted_client.id, active.id} and gone["throttle"] not in _ids(
        LoginThrottle
    )
    assert _ids(PendingRegistration) >= {waiting.id} and gone["registration"] not in _ids(PendingRegistration)
    assert db.session.execute(select(func.count()).select_from(RecentView)).scalar_one() == 0
    # A second sweep finds nothing more.
    assert housekeeping.sweep(now).total == 0


def test_the_sweep_is_a_scheduled_job_that_runs_in_its_own_transaction(app, admin):
    assert any(job.func is sweep_expired_bookkeeping for job in JOBS)
    long_ago = utcnow() - timedelta(days=60)
    db.session.add(
        EmailCode(user_id=admin.id, purpose="login", binding="x" * 64, code_hash="y" * 64, expires_at=long_ago)
    )
    db.session.commit()
    run_job(app, sweep_expired_bookkeeping)
    db.session.expire_all()
    assert db.session.execute(select(func.count()).select_from(EmailCode)).scalar_one() == 0
