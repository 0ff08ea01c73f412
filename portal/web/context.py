from __future__ import annotations

from flask import has_request_context, request
from flask_login import current_user

from portal.audit.context import Actor


def current_actor() -> Actor:
    """The actor of the current request, for services and the journal."""
    if not has_request_context():
        return Actor.system(None)
    authenticated = current_user.is_authenticated
    return Actor(
        organization_id=current_user.organization_id if authenticated else None,
        user_id=current_user.id if authenticated else None,
        ip=request.remote_addr,
        user_agent=request.user_agent.string or None,
    )
