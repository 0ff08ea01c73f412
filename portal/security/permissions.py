"""The permission layer: roles map to named permissions in one table, views declare theirs.

Every view is decorated with ``@requires(Permission.X)`` or ``@public``; a test walks the
URL map and fails on any view that has neither. Templates use the same table through
the ``can`` Jinja global, so a page hides exactly what its views forbid.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app
from flask_login import current_user

F = TypeVar("F", bound=Callable[..., Any])


class Role(enum.StrEnum):
    ADMIN = "admin"
    CONTRIBUTOR = "contributeur"
    READER = "lecteur"


class Permission(enum.StrEnum):
    # Every signed-in member: own profile, own sessions and tokens.
    ACCOUNT = "account"
    DOCUMENT_READ = "document.read"
    DOCUMENT_DOWNLOAD = "document.download"
    DOCUMENT_WRITE = "document.write"  # upload, new version, rename, move
    DOCUMENT_TRASH = "document.trash"  # delete to trash, restore from trash
    DOCUMENT_PURGE = "document.purge"
    ARMOIRE_MANAGE = "armoire.manage"
    USER_MANAGE = "user.manage"
    AUDIT_READ = "audit.read"
    BACKUP_MANAGE = "backup.manage"
    BILLING_MANAGE = "billing.manage"
    RETENTION_MANAGE = "retention.manage"
    ORGANIZATION_MANAGE = "organization.manage"
    # Not granted by any role: only users flagged as platform administrators.
    PLATFORM_ADMIN = "platform.admin"
    # Not granted by any role: an admin grants it to one member (``MEMBER_GRANTS``).
    RETENTION_BYPASS = "retention.bypass"


_READER = frozenset({Permission.ACCOUNT, Permission.DOCUMENT_READ, Permission.DOCUMENT_DOWNLOAD})
_CONTRIBUTOR = _READER | {Permission.DOCUMENT_WRITE, Permission.DOCUMENT_TRASH}
_ADMIN = frozenset(Permission) - {Permission.PLATFORM_ADMIN, Permission.RETENTION_BYPASS}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.READER: _READER,
    Role.CONTRIBUTOR: frozenset(_CONTRIBUTOR),
    Role.ADMIN: _ADMIN,
}


def _has_bypass_grant(user: Any) -> bool:
    from portal.compliance.grants import has_bypass

    return has_bypass(getattr(user, "organization_id", None), getattr(user, "id", None))


# Permissions granted to one member on top of the role, each with its lookup.
MEMBER_GRANTS: dict[Permission, Callable[[Any], bool]] = {Permission.RETENTION_BYPASS: _has_bypass_grant}


def has_permission(user: Any, permission: Permission) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if permission is Permission.PLATFORM_ADMIN:
        return bool(getattr(user, "is_platform_admin", False))
    if permission in MEMBER_GRANTS:
        return MEMBER_GRANTS[permission](user)
    try:
        role = Role(user.role)
    except ValueError:
        return False
    return permission in ROLE_PERMISSIONS[role]


def record_forbidden(permission: Permission) -> None:
    """Record a refused attempt as a security event (its own committed transaction): by this
    decorator, and by services that find a missing grant only once they see the object (a
    retention bypass without the grant)."""
    from flask import has_request_context, request

    from portal.audit.services import record_security_event

    details = {"permission": str(permission)}
    if has_request_context():
        # The journal then says which action was refused, not only that one was.
        details.update(method=request.method, path=request.path[:200])
    record_security_event("security.forbidden", details=details)


def _on_forbidden(permission: Permission) -> None:
    """Record the refused attempt as a security event, then answer 403."""
    record_forbidden(permission)
    abort(403)


def requires(permission: Permission) -> Callable[[F], F]:
    """Allow the view only to signed-in users whose role grants ``permission``."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()
            if not has_permission(current_user, permission):
                _on_forbidden(permission)
            return view(*args, **kwargs)

        wrapper.__coffre_permission__ = permission  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def public(view: F) -> F:
    """Mark a view as deliberately open to anonymous visitors."""
    view.__coffre_public__ = True  # type: ignore[attr-defined]
    return view


def view_permission(view: Callable[..., Any]) -> Permission | str | None:
    """What a view declares: its permission, ``"public"``, or None when it forgot."""
    if getattr(view, "__coffre_public__", False):
        return "public"
    return getattr(view, "__coffre_permission__", None)
