"""What the password login does for a pending SSO link (view layer: reads the session).

The link waits in the signed session while the member proves their password and second
factor; every session restart at login clears the session, so the link is taken out
before and put back or completed after.
"""

from __future__ import annotations

from typing import Any

from flask import flash, session
from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.auth.models import User
from portal.sso import providers, services

LINK_KEY = "sso_link"


def password_login_refused(user: User, actor: Actor, channel: str) -> bool:
    return services.password_login_refused(user, actor, channel)


def take_pending_link() -> Any:
    return session.pop(LINK_KEY, None)


def keep_pending_link(link: Any) -> None:
    if link:
        session[LINK_KEY] = link


def complete_pending_link(user: User, link: Any, actor: Actor) -> None:
    if not isinstance(link, dict):
        return
    provider = providers.get(str(link.get("provider")))
    if services.complete_link(user, link, provider, actor) is not None:
        flash(_("Votre identité %(provider)s est liée à votre compte.", provider=provider.label), "success")
