"""Account rules: registration, authentication, second factors, tokens. No Flask request here.

Every function flushes and never commits; the view commits once, then sends mail.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth import clock
from portal.auth.models import (
    AccountToken,
    EmailCode,
    LoginThrottle,
    PendingRegistration,
    RecoveryCode,
    TwoFactorMethod,
    User,
)
from portal.auth.sessions import revoke_sessions
from portal.extensions import db
from portal.organizations.models import Organization
from portal.security import totp
from portal.security.passwords import hash_password, verify_password
from portal.security.permissions import Role

LOCK_AFTER_FAILURES = 5
LOCK_BASE_SECONDS = 30
LOCK_MAX_SECONDS = 3600
EMAIL_CODE_MINUTES = 10
EMAIL_CODE_MAX_ATTEMPTS = 5
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I

TOKEN_TTL = {
    "email_confirm": timedelta(days=3),
    "password_reset": timedelta(minutes=60),
    "invitation": timedelta(days=7),
}


class AccountError(Exception):
    """A refused account action; the view turns it into a message and a status."""


class EmailTakenError(AccountError):
    pass


class AccountLockedError(AccountError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _for_user(user: User, actor: Actor) -> Actor:
    return Actor(user.organization_id, user.id, actor.ip, actor.user_agent)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user_by_email(email: str) -> User | None:
    return db.session.execute(select(User).where(func.lower(User.email) == normalise_email(email))).scalar_one_or_none()


def _keyed_hash(value: str) -> str:
    """HMAC under the pepper: a stolen table alone cannot be brute-forced offline."""
    pepper = current_app.config["PASSWORD_PEPPER"].encode()
    return hmac.new(pepper, value.encode(), hashlib.sha256).hexdigest()


# --- throttling ----------------------------------------------------------------------
#
# Per (account, client network): five failures, then 30 s doubling up to 1 h. One network
# can therefore add at most LOCK_AFTER_FAILURES to the account-wide count, and the ceiling
# (NIST's 100 consecutive failures) needs guesses from twenty networks; even then it holds
# back only clients that have never signed in to the account.

ACCOUNT_CEILING = 100
ACCOUNT_LOCK_SECONDS = 900
_ACCOUNT_ROW = "*"


def lock_seconds(failures: int) -> int:
    if failures < LOCK_AFTER_FAILURES:
        return 0
    return min(LOCK_BASE_SECONDS * 2 ** (failures - LOCK_AFTER_FAILURES), LOCK_MAX_SECONDS)


def account_key(email: str) -> str:
    return _keyed_hash("login:" + normalise_email(email))


def client_key(ip: str | None) -> str:
    """An IPv4 address, or an IPv6 /64: one subscriber holds a whole /64."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _email_of(who: User | str) -> str:
    return who.email if isinstance(who, User) else who


def _throttle_rows(key: str, client: str) -> dict[str, LoginThrottle]:
    rows = db.session.execute(
        select(LoginThrottle).where(LoginThrottle.account_key == key, LoginThrottle.client.in_((client, _ACCOUNT_ROW)))
    ).scalars()
    return {row.client: row for row in rows}


def check_lock(who: User | str, at: datetime, ip: str | None = None) -> None:
    """Raise AccountLockedError while this client, or the account for a new client, must wait."""
    client = client_key(ip)
    rows = _throttle_rows(account_key(_email_of(who)), client)
    waits = []
    pair, account = rows.get(client), rows.get(_ACCOUNT_ROW)
    if pair is not None and pair.locked_until and pair.locked_until > at:
        waits.append(pair.locked_until)
    known = pair is not None and pair.succeeded_at is not None
    if account is not None and account.locked_until and account.locked_until > at and not known:
        waits.append(account.locked_until)
    if waits:
        raise AccountLockedError(max(1, math.ceil((max(waits) - at).total_seconds())))


def _ensure_row(key: str, client: str, at: datetime) -> None:
    # Insert-or-nothing, so two first failures cannot both create (or trip over) the row.
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(
        insert(LoginThrottle)
        .values(account_key=key, client=client, failures=0, updated_at=at)
        .on_conflict_do_nothing(index_elements=["account_key", "client"])
    )


def _count_failure(key: str, client: str, at: datetime) -> int:
    _ensure_row(key, client, at)
    return db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.account_key == key, LoginThrottle.client == client)
        .values(failures=LoginThrottle.failures + 1, updated_at=at)
        .returning(LoginThrottle.failures)
    ).scalar_one()


def _lock(key: str, client: str, until: datetime) -> None:
    # Only ever lengthens: a concurrent smaller count must not shorten a longer delay.
    db.session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.account_key == key,
            LoginThrottle.client == client,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < until),
        )
        .values(locked_until=until)
    )


def register_failure(who: User | str, at: datetime, ip: str | None = None) -> None:
    key, client = account_key(_email_of(who)), client_key(ip)
    failures = _count_failure(key, client, at)
    delay = lock_seconds(failures)
    if delay:
        _lock(key, client, at + timedelta(seconds=delay))
    # Only a client's first failures count towards the ceiling (see above).
    if failures <= LOCK_AFTER_FAILURES and _count_failure(key, _ACCOUNT_ROW, at) >= ACCOUNT_CEILING:
        _lock(key, _ACCOUNT_ROW, at + timedelta(seconds=ACCOUNT_LOCK_SECONDS))
    db.session.flush()


def reset_failures(who: User | str, ip: str | None = None, *, at: datetime | None = None) -> None:
    """After a success: forget this client's failures (and mark it known) and the account's count."""
    key = account_key(_email_of(who))
    db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.account_key == key, LoginThrottle.client == _ACCOUNT_ROW)
        .values(failures=0, locked_until=None)
    )
    if ip is not None:
        at = at or clock.now()
        client = client_key(ip)
        _ensure_row(key, client, at)
        db.session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.account_key == key, LoginThrottle.client == client)
            .values(failures=0, locked_until=None, succeeded_at=at, updated_at=at)
        )


# --- registration and login ----------------------------------------------------------


REGISTRATION_TTL = timedelta(hours=72)


def request_registration(
    organization_name: str, name: str, email: str, password: str, locale: str | None
) -> tuple[str, str | None]:
    """("new", link token) or ("taken", None). Nothing is created until the link is used.

    Both paths hash the password, so that the time taken does not tell them apart either.
    """
    email = normalise_email(email)
    password_hash = hash_password(password)
    if find_user_by_email(email) is not None:
        return "taken", None
    token = secrets.token_urlsafe(32)
    at = clock.now()
    db.session.add(
        PendingRegistration(
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            email=email,
            organization_name=organization_name.strip(),
            name=name.strip(),
            password_hash=password_hash,
            locale=locale,
            created_at=at,
            expires_at=at + REGISTRATION_TTL,
        )
    )
    db.session.flush()
    return "new", token


def peek_registration(token: str) -> PendingRegistration | None:
    if not token or len(token) > 100:
        return None
    row = db.session.execute(
        select(PendingRegistration).where(PendingRegistration.token_hash == hashlib.sha256(token.encode()).hexdigest())
    ).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= clock.now():
        return None
    return row


def complete_registration(token: str, actor: Actor) -> User | None:
    """Create the organisation and its first admin from a confirmed link, once.

    None when the link is void or the address was taken meanwhile; the caller must treat an
    IntegrityError (a concurrent twin registration) the same way.
    """
    row = peek_registration(token)
    if row is None:
        return None
    at = clock.now()
    done = db.session.execute(
        update(PendingRegistration)
        .where(PendingRegistration.id == row.id, PendingRegistration.used_at.is_(None))
        .values(used_at=at)
    ).rowcount
    if done != 1 or find_user_by_email(row.email) is not None:
        return None
    org = Organization(name=row.organization_name, require_2fa=True)
    db.session.add(org)
    db.session.flush()
    user = User(
        organization_id=org.id,
        email=row.email,
        name=row.name,
        role=Role.ADMIN.value,
        password_hash=row.password_hash,
        password_changed_at=at,
        email_confirmed_at=at,  # the link reached the mailbox
        locale=row.locale,
    )
    db.session.add(user)
    db.session.flush()
    who = _for_user(user, actor)
    record("organization.created", who, target_type="organization", target_id=org.id, target_label=org.name)
    record("user.registered", who, target_type="user", target_id=user.id, target_label=user.email)
    return user


def authenticate(email: str, password: str, actor: Actor) -> User | None:
    """Check a password; record a failure in the journal. Raises AccountLockedError.

    An address without an account is counted and delayed exactly like one with an account.
    """
    at = clock.now()
    user = find_user_by_email(email)
    try:
        check_lock(email, at, actor.ip)
    except AccountLockedError:
        if user is not None:
            record(
                "user.locked_out",
                _for_user(user, actor),
                target_type="user",
                target_id=user.id,
                target_label=user.email,
            )
        raise
    valid = verify_password(password, user.password_hash if user else None)
    if user is None or not valid or not user.active:
        who = _for_user(user, actor) if user else Actor(None, None, actor.ip, actor.user_agent)
        reason = "unknown_email" if user is None else ("inactive" if valid else "bad_password")
        record(
            "user.login_failed",
            who,
            target_type="user",
            target_id=user.id if user else None,
            target_label=user.email if user else normalise_email(email)[:254],
            details={"reason": reason},
        )
        register_failure(email, at, actor.ip)
        return None
    return user


def complete_login(user: User, actor: Actor, method: str) -> None:
    user.last_login_at = clock.now()
    reset_failures(user, actor.ip, at=user.last_login_at)
    record(
        "user.login",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"method": method},
    )


def logout(user: User, session_id: int | None, actor: Actor) -> None:
    if session_id is not None:
        from portal.auth.models import UserSession

        db.session.execute(update(UserSession).where(UserSession.id == session_id).values(revoked_at=clock.now()))
    record("user.logout", actor, target_type="user", target_id=user.id, target_label=user.email)


# --- single-use link tokens ----------------------------------------------------------


def issue_token(user: User, purpose: str) -> str:
    token = secrets.token_urlsafe(32)
    at = clock.now()
    db.session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            created_at=at,
            expires_at=at + TOKEN_TTL[purpose],
        )
    )
    db.session.flush()
    return token


def peek_token(token: str, purpose: str) -> AccountToken | None:
    """The live token row, without using it (to show a form)."""
    if not token or len(token) > 100:
        return None
    row = db.session.execute(
        select(AccountToken).where(AccountToken.token_hash == hashlib.sha256(token.encode()).hexdigest())
    ).scalar_one_or_none()
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= clock.now():
        return None
    return row


def consume_token(token: str, purpose: str) -> AccountToken | None:
    """Use a token once: an atomic UPDATE, so two concurrent uses cannot both win."""
    row = peek_token(token, purpose)
    if row is None:
        return None
    done = db.session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
        .values(used_at=clock.now())
    ).rowcount
    return row if done == 1 else None


def confirm_email(token: str, actor: Actor) -> User | None:
    row = consume_token(token, "email_confirm")
    if row is None:
        return None
    user = row.user
    user.email_confirmed_at = clock.now()
    record(
        "user.email_confirmed", _for_user(user, actor), target_type="user", target_id=user.id, target_label=user.email
    )
    return user


def request_password_reset(email: str, actor: Actor) -> tuple[User, str] | None:
    user = find_user_by_email(email)
    if user is None or not user.active or user.password_hash is None:
        return None
    token = issue_token(user, "password_reset")
    record(
        "user.password_reset_requested",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
    )
    return user, token


def reset_password(token: str, password: str, actor: Actor) -> User | None:
    row = consume_token(token, "password_reset")
    if row is None:
        return None
    user = row.user
    user.password_hash = hash_password(password)
    user.password_changed_at = clock.now()
    reset_failures(user)  # the mailbox owner is back: lift the account-wide ceiling
    ended = revoke_sessions(user.id)
    revoked = _revoke_api_tokens(user.id)
    record(
        "user.password_reset",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"sessions_ended": ended, "tokens_revoked": revoked},
    )
    return user


def _revoke_api_tokens(user_id: int) -> int:
    # Imported here: the API package builds on this module.
    from portal.api.services import revoke_user_tokens

    return revoke_user_tokens(user_id)


def change_password(
    user: User, current: str, new: str, actor: Actor, *, keep_session_id: int | None, end_others: bool = True
) -> bool:
    """False when ``current`` is wrong. The other sessions end unless ``end_others`` is False."""
    if not verify_password(current, user.password_hash):
        register_failure(user, clock.now(), actor.ip)
        return False
    user.password_hash = hash_password(new)
    user.password_changed_at = clock.now()
    ended = revoke_sessions(user.id, except_id=keep_session_id) if end_others else 0
    # Tokens minted before the change are refused anyway (password_changed_at); revoking them
    # also shows them as such on /me/jetons.
    revoked = _revoke_api_tokens(user.id)
    record(
        "user.password_changed",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"sessions_ended": ended, "tokens_revoked": revoked},
    )
    return True


# --- second factors -------------------------------------------------------------------


def begin_totp_enrolment(user: User) -> str:
    """A new pending secret (replacing any earlier one), returned in clear for display."""
    secret = totp.new_secret()
    user.totp_pending_encrypted = totp.encrypt_secret(secret, user.id)
    db.session.flush()
    return secret


def pending_totp_secret(user: User) -> str | None:
    if not user.totp_pending_encrypted:
        return None
    return totp.decrypt_secret(user.totp_pending_encrypted, user.id)


def _accept_step(user: User, step: int) -> bool:
    """Advance the last accepted step atomically; False on a replay."""
    done = db.session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
    ).rowcount
    db.session.refresh(user, ["totp_last_step"])
    return done == 1


def confirm_totp_enrolment(user: User, code: str, actor: Actor) -> list[str] | None:
    secret = pending_totp_secret(user)
    if secret is None:
        return None
    step = totp.matching_step(secret, code, clock.now())
    if step is None:
        return None
    user.totp_secret_encrypted = user.totp_pending_encrypted
    user.totp_pending_encrypted = None
    user.totp_last_step = None
    db.session.flush()
    if not _accept_step(user, step):
        return None
    return _enable(user, TwoFactorMethod.TOTP, actor)


def _enable(user: User, method: str, actor: Actor) -> list[str]:
    user.two_factor_method = method
    user.two_factor_enabled_at = clock.now()
    if method != TwoFactorMethod.TOTP:
        user.totp_secret_encrypted = None
        user.totp_pending_encrypted = None
    codes = _new_recovery_codes(user)
    record(
        "user.2fa_enabled",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"method": method},
    )
    return codes


def verify_totp(user: User, code: str) -> bool:
    if user.two_factor_method != TwoFactorMethod.TOTP or not user.totp_secret_encrypted:
        return False
    secret = totp.decrypt_secret(user.totp_secret_encrypted, user.id)
    step = totp.matching_step(secret, code, clock.now())
    return step is not None and _accept_step(user, step)


def issue_email_code(user: User, purpose: str, binding: str) -> str:
    """A fresh 6-digit code; earlier live codes for the same purpose and binding are voided."""
    at = clock.now()
    db.session.execute(
        update(EmailCode)
        .where(
            EmailCode.user_id == user.id,
            EmailCode.purpose == purpose,
            EmailCode.binding == binding,
            EmailCode.used_at.is_(None),
        )
        .values(used_at=at)
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    db.session.add(
        EmailCode(
            user_id=user.id,
            purpose=purpose,
            binding=binding,
            code_hash=_keyed_hash(f"{user.id}:{purpose}:{code}"),
            created_at=at,
            expires_at=at + timedelta(minutes=current_app.config.get("EMAIL_CODE_MINUTES", EMAIL_CODE_MINUTES)),
        )
    )
    db.session.flush()
    return code


def verify_email_code(user: User, purpose: str, binding: str | None, code: str) -> bool:
    code = code.strip().replace(" ", "")
    if not binding or len(code) != 6 or not (code.isascii() and code.isdigit()):
        return False
    at = clock.now()
    row = db.session.execute(
        select(EmailCode)
        .where(
            EmailCode.user_id == user.id,
            EmailCode.purpose == purpose,
            EmailCode.binding == binding,
            EmailCode.used_at.is_(None),
        )
        .order_by(EmailCode.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None or row.expires_at <= at:
        return False
    # Counted in SQL and decided on the returned value: a read-modify-write in Python lets
    # concurrent guesses overwrite each other's count, and the code would never be voided.
    attempts = db.session.execute(
        update(EmailCode)
        .where(EmailCode.id == row.id, EmailCode.used_at.is_(None), EmailCode.expires_at > at)
        .values(attempts=EmailCode.attempts + 1)
        .returning(EmailCode.attempts)
    ).scalar_one_or_none()
    if attempts is None or attempts > EMAIL_CODE_MAX_ATTEMPTS:
        return False
    if not hmac.compare_digest(row.code_hash, _keyed_hash(f"{user.id}:{purpose}:{code}")):
        if attempts >= EMAIL_CODE_MAX_ATTEMPTS:
            db.session.execute(
                update(EmailCode).where(EmailCode.id == row.id, EmailCode.used_at.is_(None)).values(used_at=at)
            )
        return False
    done = db.session.execute(
        update(EmailCode).where(EmailCode.id == row.id, EmailCode.used_at.is_(None)).values(used_at=at)
    ).rowcount
    return done == 1


def confirm_email_enrolment(user: User, binding: str | None, code: str, actor: Actor) -> list[str] | None:
    if not verify_email_code(user, "enroll", binding, code):
        return None
    return _enable(user, TwoFactorMethod.EMAIL, actor)


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))  # 50 bits
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_keyed_hash(f"{user.id}:{raw}"), created_at=clock.now()))
    db.session.flush()
    return codes


def regenerate_recovery_codes(user: User, actor: Actor) -> list[str]:
    codes = _new_recovery_codes(user)
    record(
        "user.recovery_codes_regenerated",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
    )
    return codes


def remaining_recovery_codes(user: User) -> int:
    return db.session.execute(
        select(func.count()).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).scalar_one()


def _normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def use_recovery_code(user: User, code: str, actor: Actor) -> bool:
    raw = _normalise_recovery(code)
    if len(raw) != 10:
        return False
    done = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _keyed_hash(f"{user.id}:{raw}"),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=clock.now())
    ).rowcount
    if done != 1:
        return False
    record(
        "user.recovery_code_used",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"remaining": remaining_recovery_codes(user)},
    )
    return True


def looks_like_recovery_code(code: str) -> bool:
    return len(_normalise_recovery(code)) == 10 and not code.strip().isdigit()


def verify_second_factor(user: User, code: str, binding: str | None, actor: Actor) -> str | None:
    """The method that accepted ``code`` (totp, email, recovery), or None."""
    if looks_like_recovery_code(code):
        return "recovery" if use_recovery_code(user, code, actor) else None
    if user.two_factor_method == TwoFactorMethod.TOTP:
        return "totp" if verify_totp(user, code) else None
    if user.two_factor_method == TwoFactorMethod.EMAIL:
        return "email" if verify_email_code(user, "login", binding, code) else None
    return None


def record_second_factor_failure(user: User, actor: Actor) -> None:
    register_failure(user, clock.now(), actor.ip)
    record("user.2fa_failed", _for_user(user, actor), target_type="user", target_id=user.id, target_label=user.email)


def disable_two_factor(user: User, password: str, code: str, binding: str | None, actor: Actor) -> bool:
    if not verify_password(password, user.password_hash):
        register_failure(user, clock.now(), actor.ip)
        return False
    if user.two_factor_method == TwoFactorMethod.EMAIL:
        accepted = verify_email_code(user, "disable", binding, code) or (
            looks_like_recovery_code(code) and use_recovery_code(user, code, actor)
        )
    else:
        accepted = verify_second_factor(user, code, binding, actor) is not None
    if not accepted:
        record_second_factor_failure(user, actor)
        return False
    method = user.two_factor_method
    user.two_factor_method = None
    user.two_factor_enabled_at = None
    user.totp_secret_encrypted = None
    user.totp_pending_encrypted = None
    user.totp_last_step = None
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    record(
        "user.2fa_disabled",
        _for_user(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"method": method},
    )
    return True


def verify_reauth(user: User, password: str | None, code: str | None, binding: str | None, actor: Actor) -> bool:
    """A fresh proof for a sensitive action: the password, or a current second-factor code."""
    at = clock.now()
    check_lock(user, at, actor.ip)
    if password and verify_password(password, user.password_hash):
        return True
    if code and user.two_factor_method == TwoFactorMethod.TOTP and verify_totp(user, code):
        return True
    if code and user.two_factor_method == TwoFactorMethod.EMAIL and verify_email_code(user, "reauth", binding, code):
        return True
    register_failure(user, at, actor.ip)
    return False
