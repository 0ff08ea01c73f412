"""With SMTP configured, the invitation link can still be copied; there is no outbox to point to."""

from __future__ import annotations

from sqlalchemy import select

from portal.auth.models import User
from portal.extensions import db
from tests.auth.support import csrf_of, text


def test_copy_link_without_outbox_link_when_smtp_is_configured(admin_client, app, inbox):
    token = csrf_of(admin_client, "/users")
    response = admin_client.post(
        "/users/invite", data={"csrf_token": token, "email": "awa@diop.sn", "name": "Awa Diop", "role": "lecteur"}
    )
    page = text(admin_client.get(response.headers["Location"]))
    assert "Invitation envoyée à awa@diop.sn" in page
    awa = db.session.execute(select(User).where(User.email == "awa@diop.sn")).scalar_one()
    mailed = inbox.link_for("awa@diop.sn", "/auth/invitation/")
    row = page.split(f'id="member-{awa.id}"', 1)[1].split("</tr>", 1)[0]
    assert f'data-copy-text="http://localhost{mailed}"' in row
    assert "Voir le message" not in row and "/auth/dev/outbox" not in page
