"""Session lifecycle: loading the user, idle and absolute timeouts, unauthorised answers."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, redirect, request, session, url_for
from flask_login import current_user, logout_user

from portal.auth.models import User
from portal.extensions import db, login_manager
from portal.web.htmx import hx_redirect, is_htmx

SESSION_AUTH_AT = "auth_at"
SESSION_SEEN_AT = "seen_at"


@login_manager.user_loader
def load_user(session_user_id: str) -> User | None:
    """Load the session's user only while the session version still matches."""
    try:
        user_id, version = (int(part) for part in session_user_id.split(":", 1))
    except ValueError:
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active or user.session_version != version:
        return None
    return user


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


def open_session_for(user: User, store) -> None:
    """Write an authenticated session for ``user`` into a session mapping."""
    now = int(time.time())
    store["_user_id"] = user.get_id()
    store["_fresh"] = True
    store[SESSION_AUTH_AT] = now
    store[SESSION_SEEN_AT] = now


def start_session(user: User, remember: bool = False) -> None:
    """Begin a fresh authenticated session (a new cookie: no fixation)."""
    from flask_login import login_user

    session.clear()
    login_user(user, remember=remember)
    open_session_for(user, session)
    session.permanent = True


def _enforce_timeouts() -> Response | None:
    if request.endpoint == "static" or not current_user.is_authenticated:
        return None
    now = int(time.time())
    idle_limit = current_app.config["SESSION_IDLE_MINUTES"] * 60
    absolute_limit = current_app.config["SESSION_ABSOLUTE_HOURS"] * 3600
    auth_at = session.get(SESSION_AUTH_AT, 0)
    seen_at = session.get(SESSION_SEEN_AT, 0)
    if now - seen_at > idle_limit or now - auth_at > absolute_limit:
        logout_user()
        session.clear()
        return unauthorized()
    session[SESSION_SEEN_AT] = now
    return None


def init_app(app: Flask) -> None:
    login_manager.session_protection = None  # our own version check replaces it
    login_manager.login_view = "auth.login"
    app.before_request(_enforce_timeouts)
