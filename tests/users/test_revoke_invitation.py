"""Revoking a pending invitation: the link dies, the address can be invited again."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.extensions import db
from tests.conftest import csrf


def _invite(client, email="awa.ndiaye@diop.sn"):
    return client.post(
        "/users/invite",
        data={"csrf_token": csrf(client, "/users"), "email": email, "name": "Awa Ndiaye", "role": "lecteur"},
    )


def test_revoked_invitation_link_stops_working_and_the_address_is_free(app, admin_client, client):
    assert _invite(admin_client).status_code == 303
    page = admin_client.get("/users").get_data(as_text=True)
    text = html.unescape(page)
    assert "Révoquer l'invitation" in text and "Copier le lien" in text and "Renvoyer l'invitation" in text
    link = re.search(r'data-copy-text="([^"]+)"', page).group(1)
    path = link.split("://", 1)[1].split("/", 1)[1]
    assert client.get("/" + path).status_code == 200
    invited = db.session.execute(select(User).where(User.email == "awa.ndiaye@diop.sn")).scalar_one()
    response = admin_client.post(
        f"/users/{invited.id}/revoquer-invitation", data={"csrf_token": csrf(admin_client, "/users")}
    )
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.execute(select(User).where(User.email == "awa.ndiaye@diop.sn")).first() is None
    assert client.get("/" + path).status_code == 404
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.invitation_revoked")).scalar_one()
    assert entry.target_label == "awa.ndiaye@diop.sn"
    assert _invite(admin_client).status_code == 303  # the address can be invited again


def test_an_active_member_is_not_revoked(app, admin_client, reader):
    response = admin_client.post(
        f"/users/{reader.id}/revoquer-invitation", data={"csrf_token": csrf(admin_client, "/users")}
    )
    assert response.status_code == 409
    assert db.session.get(User, reader.id) is not None
