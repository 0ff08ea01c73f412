"""Account rules: authentication. No Flask request objects here."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth.models import User
from portal.database import utcnow
from portal.extensions import db
from portal.security.passwords import verify_password


def find_user_by_email(email: str) -> User | None:
    return db.session.execute(select(User).where(func.lower(User.email) == email.strip().lower())).scalar_one_or_none()


def authenticate(email: str, password: str, actor: Actor) -> User | None:
    """Check a password; record the outcome in the journal (flushed, not committed)."""
    user = find_user_by_email(email)
    valid = verify_password(password, user.password_hash if user else None)
    if user is None or not valid or not user.active:
        who = Actor(
            organization_id=user.organization_id if user else None,
            user_id=user.id if user else None,
            ip=actor.ip,
            user_agent=actor.user_agent,
        )
        reason = "unknown_email" if user is None else ("inactive" if valid else "bad_password")
        record(
            "user.login_failed",
            who,
            target_type="user",
            target_id=user.id if user else None,
            target_label=user.email if user else None,
            details={"reason": reason},
        )
        return None
    user.last_login_at = utcnow()
    record(
        "user.login",
        Actor(user.organization_id, user.id, actor.ip, actor.user_agent),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
    )
    return user


def logout(user: User, actor: Actor) -> None:
    record("user.logout", actor, target_type="user", target_id=user.id, target_label=user.email)
