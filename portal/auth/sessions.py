"""Server-side sessions.

The signed cookie holds only a random 256-bit token; its SHA-256 names a row of
``sessions_utilisateurs``. Logging out, changing the password or deactivating a member
revokes rows, so a cookie copied earlier is refused on its next request. Idle and
absolute timeouts are checked against the row, never against the cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import MutableMapping
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Response, current_app, flash, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select, update

from portal.auth import clock
from portal.auth.models import User, UserSession
from portal.extensions import db, login_manager
from portal.web.htmx import hx_redirect, is_htmx, redirect_or_hx

SESSION_TOKEN = "sid"  # noqa: S105 - a session key name, not a secret
PENDING_TOKEN = "pending_sid"  # noqa: S105
# Rewriting last_seen_at on every request would make each page a write.
TOUCH_SECONDS_DEFAULT = 60
PENDING_MINUTES = 10


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _limits(row: UserSession) -> tuple[timedelta, timedelta]:
    """(idle, absolute) limits. "Remember me" survives browser restarts and idle periods,
    but never the absolute limit: AAL2 asks for a new login every 12 hours regardless."""
    config = current_app.config
    org = row.user.organization
    # An organisation may shorten its sessions (organisation settings), never lengthen them.
    hours = min(org.session_absolute_hours or config["SESSION_ABSOLUTE_HOURS"], config["SESSION_ABSOLUTE_HOURS"])
    minutes = min(org.session_idle_minutes or config["SESSION_IDLE_MINUTES"], config["SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=hours)
    if row.remember:
        return absolute, absolute
    return timedelta(minutes=minutes), absolute


def is_expired(row: UserSession, at: datetime) -> bool:
    idle, absolute = _limits(row)
    return at - row.last_seen_at > idle or at - row.auth_at > absolute


def find_session(token: str | None, *, pending: bool = False) -> UserSession | None:
    """The live row for ``token`` (not revoked, not expired), or None."""
    if not token or not isinstance(token, str):
        return None
    row = db.session.execute(
        select(UserSession).where(UserSession.token_hash == token_hash(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.mfa_pending != pending:
        return None
    at = clock.now()
    if pending:
        if at - row.created_at > timedelta(minutes=PENDING_MINUTES):
            return None
    elif is_expired(row, at):
        return None
    if not row.user.active:
        return None
    return row


@login_manager.user_loader
def load_user(session_user_id: str) -> User | None:
    """Resolve the cookie's token to a live server-side session and its user."""
    row = find_session(session.get(SESSION_TOKEN))
    if row is None or row.user.get_id() != session_user_id:
        return None
    g.user_session = row
    return row.user


def current_session() -> UserSession | None:
    if not current_user.is_authenticated:
        return None
    return g.get("user_session")


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    from portal.web.errors import problem_response

    login_url = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.path.startswith("/api/"):
        return problem_response(401, "Unauthorized", "Authentication is required.", "/problems/unauthorized")
    if is_htmx():
        # A 302 would make htmx swap the login form into whatever fragment was asked for.
        response = hx_redirect(login_url)
        response.status_code = 401
        return response
    return redirect(login_url)


def create_session_row(
    user: User,
    *,
    pending: bool = False,
    remember: bool = False,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[UserSession, str]:
    """Add a session row (flushed, not committed) and return it with its clear token."""
    token = secrets.token_urlsafe(32)
    at = clock.now()
    row = UserSession(
        organization_id=user.organization_id,
        user_id=user.id,
        token_hash=token_hash(token),
        created_at=at,
        last_seen_at=at,
        auth_at=at,
        reauth_at=at,
        mfa_pending=pending,
        remember=remember,
        ip=ip,
        user_agent=(user_agent or "")[:300] or None,
    )
    db.session.add(row)
    db.session.flush()
    return row, token


def open_session_for(user: User, store: MutableMapping[str, Any], **options: Any) -> UserSession:
    """Create a server-side session for ``user`` and write its token into ``store``.

    The caller commits (the row must exist before the cookie is used).
    """
    row, token = create_session_row(user, **options)
    store.pop(PENDING_TOKEN, None)
    store["_user_id"] = user.get_id()
    store["_fresh"] = True
    store[SESSION_TOKEN] = token
    return row


def start_session(user: User, *, remember: bool = False, ip: str | None = None, user_agent: str | None = None) -> None:
    """Begin a fresh authenticated session: a new token, so no fixation. Caller commits."""
    session.clear()
    login_user(user)
    open_session_for(user, session, remember=remember, ip=ip, user_agent=user_agent)
    session.permanent = remember


def start_pending(user: User, *, remember: bool, ip: str | None, user_agent: str | None) -> UserSession:
    """Password accepted, second factor still due. Caller commits."""
    session.clear()
    row, token = create_session_row(user, pending=True, remember=remember, ip=ip, user_agent=user_agent)
    session[PENDING_TOKEN] = token
    return row


def pending_session() -> UserSession | None:
    return find_session(session.get(PENDING_TOKEN), pending=True)


def pending_binding() -> str | None:
    token = session.get(PENDING_TOKEN)
    return token_hash(token) if isinstance(token, str) else None


def current_binding() -> str | None:
    token = session.get(SESSION_TOKEN)
    return token_hash(token) if isinstance(token, str) else None


def end_session() -> None:
    """Forget the session in this browser (the row is revoked by the caller)."""
    logout_user()
    session.clear()


def revoke_sessions(user_id: int, *, except_id: int | None = None) -> int:
    statement = (
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    if except_id is not None:
        statement = statement.where(UserSession.id != except_id)
    return db.session.execute(statement).rowcount or 0


# Endpoints a member who must enrol in 2FA may still reach: the enrolment page and what it
# posts to (the e-mail code, and the re-authentication it asks for when the last proof is
# old: without it, that form would send the member back to itself forever), plus leaving,
# the language, and confirming the address.
ENROLMENT_ENDPOINTS = {
    "static",
    "auth.two_factor_enable",
    "auth.two_factor_enable_send_code",
    "auth.reauth",
    "auth.reauth_send_code",
    "auth.logout",
    "auth.confirm_email",
    "main.set_language",
    "main.healthz",
    "main.readyz",
}


def _forget_stale_session() -> Response | None:
    """A cookie naming a revoked or expired session: clear it and send the visitor to login.

    Without this an expired member would silently see public pages as a stranger, and an
    HTMX request would swap a login form into a fragment.
    """
    # The SSO flow is a way back in, like the login page: a stale cookie must not break it.
    if SESSION_TOKEN not in session or (request.endpoint or "").startswith(("auth.", "sso.start", "sso.callback")):
        return None
    session.clear()
    if not is_htmx() and not request.path.startswith("/api/"):
        flash(_("Votre session a expiré. Connectez-vous à nouveau."), "warning")
    return unauthorized()


def _before_request() -> Response | None:
    if request.endpoint == "static":
        return None
    if not current_user.is_authenticated:
        return _forget_stale_session()
    row = g.get("user_session")
    if row is not None:
        touch = current_app.config.get("SESSION_TOUCH_SECONDS", TOUCH_SECONDS_DEFAULT)
        at = clock.now()
        if (at - row.last_seen_at).total_seconds() >= touch:
            from portal.database import bookkeeping_write

            bookkeeping_write(update(UserSession).where(UserSession.id == row.id).values(last_seen_at=at))
    user = current_user
    if user.organization.require_2fa and not user.has_two_factor and request.endpoint not in ENROLMENT_ENDPOINTS:
        if request.path.startswith("/api/"):
            return None
        return redirect_or_hx(url_for("auth.two_factor_enable"))
    return None


def init_app(app: Flask) -> None:
    login_manager.session_protection = None  # the server-side row replaces it
    login_manager.login_view = "auth.login"
    app.before_request(_before_request)
