"""The permission layer: every view declares its permission; roles nest as documented."""

from __future__ import annotations

from portal.security.permissions import ROLE_PERMISSIONS, Permission, Role, view_permission


def test_every_view_declares_a_permission_or_is_explicitly_public(app):
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        if view_permission(view) is None:
            missing.append(f"{rule.rule} ({rule.endpoint})")
    assert missing == [], "views without @requires or @public: " + ", ".join(missing)


def test_roles_nest_reader_contributor_admin():
    reader, contributor, admin = (ROLE_PERMISSIONS[r] for r in (Role.READER, Role.CONTRIBUTOR, Role.ADMIN))
    assert reader < contributor < admin
    assert reader == {Permission.ACCOUNT, Permission.DOCUMENT_READ, Permission.DOCUMENT_DOWNLOAD}
    assert contributor - reader == {Permission.DOCUMENT_WRITE, Permission.DOCUMENT_TRASH}
    assert Permission.PLATFORM_ADMIN not in admin


def test_a_forbidden_action_is_403_and_logged(app, reader, reader_client):
    from sqlalchemy import select

    from portal.audit.models import AuditEntry
    from portal.extensions import db

    restricted = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods
        and not rule.arguments
        and view_permission(app.view_functions[rule.endpoint]) == Permission.USER_MANAGE
    ]
    assert restricted, "no admin-only page to try"
    response = reader_client.get(restricted[0])
    assert response.status_code == 403
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "security.forbidden")).scalar_one()
    assert entry.user_id == reader.id and entry.organization_id == reader.organization_id


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get("/me")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=/me")
    api = client.get("/api/v1/me")
    assert api.status_code == 401 and api.mimetype == "application/problem+json"
