"""The main navigation: one list, filtered by what the current user may do."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.security.permissions import Permission, has_permission


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: object
    permission: Permission
    # Grouped in the header's "Administration" menu: an admin's ten links wrapped onto two rows.
    admin: bool = False


NAV_ITEMS: tuple[NavItem, ...] = (
    NavItem("main.index", _l("Accueil"), Permission.ACCOUNT),
    NavItem("documents.armoires", _l("Armoires"), Permission.DOCUMENT_READ),
    NavItem("documents.trash", _l("Corbeille"), Permission.DOCUMENT_TRASH),
    NavItem("dashboard.index", _l("Tableau de bord"), Permission.AUDIT_READ, admin=True),
    NavItem("audit.journal", _l("Journal"), Permission.AUDIT_READ, admin=True),
    NavItem("users.index", _l("Membres"), Permission.USER_MANAGE, admin=True),
    NavItem("organizations.settings", _l("Organisation"), Permission.ORGANIZATION_MANAGE, admin=True),
    NavItem("billing.subscription_page", _l("Abonnement"), Permission.BILLING_MANAGE, admin=True),
    NavItem("backups.index", _l("Sauvegardes"), Permission.BACKUP_MANAGE, admin=True),
    NavItem("compliance.index", _l("Conformité"), Permission.RETENTION_MANAGE, admin=True),
)


def nav_items(*, admin: bool = False) -> list[dict[str, object]]:
    """Visible items whose feature is installed, with the current one marked: the header's
    links, or (``admin=True``) the entries of its "Administration" menu."""
    views = current_app.view_functions
    items = []
    for item in NAV_ITEMS:
        if item.admin == admin and item.endpoint in views and has_permission(current_user, item.permission):
            blueprint = item.endpoint.split(".", 1)[0]
            current = request.endpoint == item.endpoint or (
                blueprint not in {"main"} and (request.endpoint or "").startswith(blueprint + ".")
            )
            items.append({"endpoint": item.endpoint, "label": item.label, "current": current})
    return items
