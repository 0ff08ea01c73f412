"""Account rules: registration, authentication, second factors, tokens. No Flask request here.

Every function flushes and never commits; the view commits once, then sends mail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update

from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth import clock
from portal.auth.models import AccountToken, EmailCode, RecoveryCode, TwoFactorMethod, User
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


# --- progressive delay -------------------------------------------------------------


def lock_seconds(failures: int) -> int:
    if failures < LOCK_AFTER_FAILURES:
        return 0
    return min(LOCK_BASE_SECONDS * 2 ** (failures - LOCK_AFTER_FAILURES), LOCK_MAX_SECONDS)


def check_lock(user: User, at: datetime) -> None:
    if user.locked_until and user.locked_until > at:
        raise AccountLockedError(max(1, int((user.locked_until - at).total_seconds()) + 1))


def register_failure(user: User, at: datetime) -> None:
    # An UPDATE with an expression, so concurrent failures all count.
    db.session.execute(update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1))
    db.session.refresh(user, ["failed_logins"])
    delay = lock_seconds(user.failed_logins)
    if delay:
        user.locked_until = at + timedelta(seconds=delay)
    db.session.flush()


def reset_failures(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None


# --- registration and login ----------------------------------------------------------


def register(organization_name: str, name: str, email: str, password: str, locale: str | None, actor: Actor) -> User:
    email = normalise_email(email)
    if find_user_by_email(email) is not None:
        raise EmailTakenError(email)
    org = Organization(name=organization_name.strip(), require_2fa=True)
    db.session.add(org)
    db.session.flush()
    user = User(
        organization_id=org.id,
        email=email,
        name=name.strip(),
        role=Role.ADMIN.value,
        password_hash=hash_password(password),
        password_changed_at=clock.now(),
        locale=locale,
    )
    db.session.add(user)
    db.session.flush()
    who = _for_user(user, actor)
    record("organization.created", who, target_type="organization", target_id=org.id, target_label=org.name)
    record("user.registered", who, target_type="user", target_id=user.id, target_label=user.email)
    return user


def authenticate(email: str, password: str, actor: Actor) -> User | None:
    """Check a password; record a failure in the journal. Raises AccountLockedError."""
    at = clock.now()
    user = find_user_by_email(email)
    if user is not None:
        try:
            check_lock(user, at)
        except AccountLockedError:
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
        if user is not None and not valid:
            register_failure(user, at)
        return None
    return user


def complete_login(user: User, actor: Actor, method: str) -> None:
    user.last_login_at = clock.now()
    reset_failures(user)
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
    reset_failures(user)
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
        register_failure(user, clock.now())
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
    register_failure(user, clock.now())
    record("user.2fa_failed", _for_user(user, actor), target_type="user", target_id=user.id, target_label=user.email)


def disable_two_factor(user: User, password: str, code: str, binding: str | None, actor: Actor) -> bool:
    if not verify_password(password, user.password_hash):
        register_failure(user, clock.now())
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
    check_lock(user, at)
    if password and verify_password(password, user.password_hash):
        return True
    if code and user.two_factor_method == TwoFactorMethod.TOTP and verify_totp(user, code):
        return True
    if code and user.two_factor_method == TwoFactorMethod.EMAIL and verify_email_code(user, "reauth", binding, code):
        return True
    register_failure(user, at)
    return False
