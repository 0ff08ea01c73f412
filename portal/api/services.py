"""API tokens: issue, look up, revoke. No Flask request objects here."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal.api.models import ApiToken
from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth import clock
from portal.auth.models import User
from portal.extensions import db
from portal.security.text import clean_name

TOKEN_PREFIX = "cof_"  # noqa: S105 - a public marker, not a secret
DEFAULT_DAYS = 30
MAX_DAYS = 365
MAX_NAME = 100
# Writing last_used_at on every call would make each read a write.
TOUCH_SECONDS = 60


class TokenError(Exception):
    """A token that cannot be created as asked."""


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """256 bits from the CSPRNG, url-safe, recognisable by its prefix in secret scanners."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def create_token(user: User, actor: Actor, *, name: str, days: int = DEFAULT_DAYS) -> tuple[ApiToken, str]:
    """Add a token for ``user`` (flushed, not committed); the clear secret is returned once."""
    name = clean_name(name)
    if not name or len(name) > MAX_NAME:
        raise TokenError("name")
    if not 1 <= days <= MAX_DAYS:
        raise TokenError("days")
    secret = new_secret()
    at = clock.now()
    token = ApiToken(
        organization_id=user.organization_id,
        user_id=user.id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:8],
        created_at=at,
        expires_at=at + timedelta(days=days),
    )
    db.session.add(token)
    db.session.flush()
    record(
        "token.created",
        actor,
        target_type="api_token",
        target_id=token.id,
        target_label=token.name,
        details={"expires_at": token.expires_at.isoformat(), "prefix": token.prefix},
    )
    return token, secret


def find_live_token(secret: str, at: datetime) -> ApiToken | None:
    """The token named by ``secret`` if it is neither revoked nor expired and its user is active."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = db.session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).scalar_one_or_none()
    if token is None or not token.is_live(at) or not token.user.active:
        return None
    # A member moved to another organisation must not keep a foothold in the old one.
    if token.user.organization_id != token.organization_id:
        return None
    # A new password (changed or reset) ends every credential issued under the old one,
    # even if the service that changed it forgot to revoke the tokens.
    changed_at = token.user.password_changed_at
    if changed_at is not None and token.created_at < changed_at:
        return None
    return token


def revoke_user_tokens(user_id: int) -> int:
    """Revoke every live token of a member (flushed, not committed); how many were revoked.

    For password reset/change and deactivation: a reactivated account must not find its
    old tokens working again.
    """
    result = db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount or 0


def needs_touch(token: ApiToken, at: datetime) -> bool:
    return token.last_used_at is None or (at - token.last_used_at).total_seconds() >= TOUCH_SECONDS


def user_tokens(user: User) -> list[ApiToken]:
    return list(
        db.session.execute(
            select(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.organization_id == user.organization_id)
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        ).scalars()
    )


def revoke_token(token: ApiToken, actor: Actor) -> bool:
    """Revoke ``token`` (flushed); False when it was already revoked."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = clock.now()
    record("token.revoked", actor, target_type="api_token", target_id=token.id, target_label=token.name)
    db.session.flush()
    return True
