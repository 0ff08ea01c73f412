"""Bearer authentication for /api/v1: the token alone decides who is calling.

API requests get an empty session that is never saved, so a browser's cookie finds no
user (and no session row to touch) and a response never sets a cookie; the blueprint's
hook then sets the request's user from the ``Authorization: Bearer`` token.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, request
from flask.sessions import SecureCookieSession, SessionInterface
from flask_babel import gettext as _
from sqlalchemy import update

from portal.api import services
from portal.api.models import ApiToken
from portal.api.problems import TWO_FACTOR_ENROLMENT_REQUIRED, ApiProblem, render_problem
from portal.auth import clock
from portal.database import bookkeeping_write

API_PREFIX = "/api/"


def is_api_path() -> bool:
    return request.path.startswith(API_PREFIX)


def bearer_secret() -> str | None:
    """The token from ``Authorization: Bearer``; never from the query string or a cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _sep, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def current_token() -> ApiToken | None:
    return g.get("api_token")


_LOOKUP_KEY = "coffre.api_token_lookup"


def _resolve_token() -> ApiToken | None:
    """The live token of this request, looked up once: the rate limiter needs it before
    the blueprint's authentication hook runs.

    Cached in the WSGI environ, not in ``g``: an app context (and its ``g``) can outlive
    one request, and a stale answer here would accept a revoked token.
    """
    if _LOOKUP_KEY in request.environ:
        return request.environ[_LOOKUP_KEY]
    secret = bearer_secret()
    token = services.find_live_token(secret, clock.now()) if secret is not None else None
    request.environ[_LOOKUP_KEY] = token
    return token


def rate_limit_key() -> str:
    """Per member for a valid token (all their tokens share one budget), else per address."""
    token = _resolve_token()
    if token is not None:
        return f"api-user:{token.user_id}"
    return f"api-ip:{request.remote_addr or 'unknown'}"


def authenticate() -> Response | None:
    g._login_user = current_app.login_manager.anonymous_user()
    g.api_token = None
    g.api_token_error = None
    if bearer_secret() is None:
        return None
    at = clock.now()
    token = _resolve_token()
    if token is None:
        g.api_token_error = "invalid_token"  # noqa: S105 - an RFC 6750 error code
        return None
    user = token.user
    if user.organization.require_2fa and not user.has_two_factor:
        return render_problem(
            ApiProblem(
                403,
                _("Votre organisation exige la double authentification : activez-la sur le portail."),
                TWO_FACTOR_ENROLMENT_REQUIRED,
            )
        )
    if services.needs_touch(token, at):
        # Nothing else has happened in this request yet, so it may commit here.
        bookkeeping_write(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=at))
    g.api_token = token
    g._login_user = user
    return None


def _challenge(response: Response) -> Response:
    if is_api_path() and response.status_code == 401:
        challenge = 'Bearer realm="coffre"'
        if g.get("api_token_error"):
            challenge += f', error="{g.api_token_error}"'
        response.headers["WWW-Authenticate"] = challenge
    return response


class ApiAwareSessions(SessionInterface):
    """The app's session interface, except that API requests get an empty, unsaved session."""

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith(API_PREFIX):
            return SecureCookieSession()
        return self.inner.open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if request.path.startswith(API_PREFIX):
            return None
        return self.inner.save_session(app, session, response)


def init_app(app: Flask) -> None:
    app.session_interface = ApiAwareSessions(app.session_interface)
    app.after_request(_challenge)
