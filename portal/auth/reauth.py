"""``requires_recent_auth``: sensitive actions need a password or code from the last minutes.

Put it *under* ``@requires(...)``. When the session's last proof is older than
REAUTH_MINUTES, the view is not run; the answer is a 401 re-authentication form that
carries the original form fields as hidden inputs and is sent back, with the same method,
to the same URL. The decorator checks the proof there and then runs the view with the
original data, so the action resumes without being retyped. For HTMX requests the form
is a fragment that swaps itself out for the view's answer; a GET resumes through
``/auth/reauth`` and a redirect back.

The carried fields are echoed into the form's HTML: do not put this decorator on a view
whose form holds a secret (a new password, a token); ask for the proof in that form instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import current_app, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import update

from portal.auth import clock
from portal.auth.models import UserSession
from portal.auth.sessions import current_binding, current_session
from portal.extensions import db
from portal.web.htmx import render_page_or_fragment, wants_fragment

REAUTH_FIELDS = ("reauth_password", "reauth_code")


def is_recent(row: UserSession, at: datetime | None = None) -> bool:
    at = at or clock.now()
    return at - row.reauth_at <= timedelta(minutes=current_app.config["REAUTH_MINUTES"])


def mark_reauthenticated(row: UserSession) -> None:
    at = clock.now()
    db.session.execute(update(UserSession).where(UserSession.id == row.id).values(reauth_at=at))
    row.reauth_at = at


def carried_fields() -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, values in request.form.lists()
        for value in values
        if key not in REAUTH_FIELDS and key != "csrf_token"
    ]


def render_reauth(error: str | None = None, status: int = 401):
    return render_page_or_fragment(
        "auth/reauth.html",
        "auth/_reauth.html",
        status=status,
        action=request.full_path.rstrip("?") if request.method != "GET" else None,
        method=request.method.lower(),
        next_url=request.full_path.rstrip("?"),
        fields=carried_fields() if request.method != "GET" else [],
        error=error,
        htmx=wants_fragment(),
    )


def requires_recent_auth(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from portal.auth import services

        row = current_session()
        if row is None:
            return current_app.login_manager.unauthorized()
        if is_recent(row):
            return view(*args, **kwargs)
        if request.method != "GET" and any(request.form.get(name) for name in REAUTH_FIELDS):
            try:
                ok = verify_submitted_proof()
            except services.AccountLockedError as locked:
                db.session.commit()
                return render_reauth(
                    _("Trop d'essais. Réessayez dans %(seconds)d secondes.", seconds=locked.retry_after), 429
                )
            if ok:
                mark_reauthenticated(row)
                db.session.commit()
                return view(*args, **kwargs)
            db.session.commit()  # the failure counter must survive
            return render_reauth(_("Mot de passe ou code incorrect."))
        return render_reauth()

    return wrapper


def verify_submitted_proof() -> bool:
    """Check the password or code sent with a re-authentication form (raises AccountLockedError)."""
    from portal.auth import services  # the services import this module's helpers
    from portal.web.context import current_actor

    return services.verify_reauth(
        current_user,
        request.form.get("reauth_password"),
        request.form.get("reauth_code"),
        current_binding(),
        current_actor(),
    )
