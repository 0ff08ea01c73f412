"""Development without SMTP: an organisation admin can reach their invitations, and only those.

The app here has no SMTP_HOST and no COFFRE_BASE_URL, as with ``scripts/serve.sh``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from portal.auth.models import AccountToken, User
from portal.extensions import db
from portal.mail import outbox_path
from tests.auth.support import csrf_of, text
from tests.conftest import ROOT, TEST_PASSWORD, csrf_token_from


@pytest.fixture
def app(app_factory: Callable[..., Flask], clock) -> Iterator[Flask]:
    app = app_factory(COFFRE_CLOCK=clock, SESSION_TOUCH_SECONDS=0)
    with app.app_context():
        yield app


def outbox() -> list[dict]:
    path = Path(outbox_path())
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def invite(client, email: str, name: str = "Awa Diop", base_url: str = "http://localhost"):
    token = csrf_token_from(client.get("/users", base_url=base_url).get_data(as_text=True))
    return client.post(
        "/users/invite",
        data={"csrf_token": token, "email": email, "name": name, "role": "lecteur"},
        base_url=base_url,
    )


def client_at(app: Flask, user, base_url: str):
    """A signed-in client that reaches the portal as a browser on ``base_url`` would."""
    from portal.auth.sessions import open_session_for

    client = app.test_client()
    with client.session_transaction(base_url=base_url) as session:
        open_session_for(user, session)
    db.session.commit()
    return client


def link_in(message_text: str) -> str:
    match = re.search(r"https?://\S+/auth/invitation/\S+", message_text)
    assert match, message_text
    return match.group(0)


def test_links_are_built_from_the_request_host_when_no_base_url_is_set(app_factory, admin, clock):
    app = app_factory(SERVER_NAME=None, COFFRE_CLOCK=clock)
    assert app.config["COFFRE_BASE_URL"] is None
    client = client_at(app, admin, "http://127.0.0.1:5077")
    response = invite(client, "awa@diop.sn", base_url="http://127.0.0.1:5077")
    assert response.status_code == 303
    link = link_in(outbox()[-1]["text"])
    assert link.startswith("http://127.0.0.1:5077/auth/invitation/")
    path = link.removeprefix("http://127.0.0.1:5077")
    assert app.test_client().get(path).status_code == 200


def test_a_configured_base_url_wins_over_the_request_host(app_factory, admin):
    app = app_factory(SERVER_NAME=None, COFFRE_BASE_URL="https://coffre.example.org/")
    client = client_at(app, admin, "http://evil.example")
    assert invite(client, "awa@diop.sn", base_url="http://evil.example").status_code == 303
    assert link_in(outbox()[-1]["text"]).startswith("https://coffre.example.org/auth/invitation/")


def test_mail_without_smtp_is_written_to_the_server_log(tmp_path):
    """The real default logging of a started app (no pytest capture): the line reaches stderr."""
    script = (
        "from portal import create_app\n"
        "from portal.mail import send_mail\n"
        "app = create_app({'TESTING': False, 'SCHEDULER_ENABLED': False})\n"
        "with app.app_context():\n"
        "    send_mail('awa@diop.sn', 'Sujet visible', 'Lien http://127.0.0.1:5077/x\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COFFRE_", "SMTP_", "SECRET_KEY", "DATABASE_URL"))}
    env["COFFRE_INSTANCE_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Sujet visible" in result.stderr and "http://127.0.0.1:5077/x" in result.stderr


def test_org_admin_sees_own_org_invitations_and_own_mail_never_another_members_reset(
    app, admin, admin_client, reader, make_org, make_user, login_as
):
    other_admin = make_user("admin", org=make_org("Autre organisation"))
    assert invite(admin_client, "awa@diop.sn", name="Awa Diop").status_code == 303
    assert invite(login_as(other_admin), "omar@ailleurs.sn", name="Omar Ailleurs").status_code == 303
    anonymous = app.test_client()
    for address in (reader.email, admin.email):
        token = csrf_of(anonymous, "/auth/password/forgot")
        anonymous.post("/auth/password/forgot", data={"csrf_token": token, "email": address})
    entries = outbox()
    assert {entry["kind"] for entry in entries} == {"invitation", "password_reset"}
    assert all(entry["organization_id"] and entry["user_id"] for entry in entries)

    page = admin_client.get("/auth/dev/outbox")
    assert page.status_code == 200
    body = text(page)
    assert "Aucun serveur d'e-mail n'est configuré : voici le message et son lien." in body
    assert "awa@diop.sn" in body and "/auth/invitation/" in body
    assert "omar@ailleurs.sn" not in body  # another organisation
    assert reader.email not in body  # another member's reset link would be their account
    assert admin.email in body and "/auth/password/reset/" in body  # the admin's own mail

    awa = db.session.execute(select(User).where(User.email == "awa@diop.sn")).scalar_one()
    one = text(admin_client.get(f"/auth/dev/outbox?membre={awa.id}"))
    assert "awa@diop.sn" in one and admin.email not in one.split("<main", 1)[-1].split("</header>", 1)[-1]
    assert text(admin_client.get(f"/auth/dev/outbox?membre={reader.id}")).count("mail-body") == 0
    assert admin_client.get("/auth/dev/outbox?membre=abc").status_code == 200

    assert login_as(reader).get("/auth/dev/outbox").status_code == 403
    platform = make_user("lecteur", org=make_org("Plateforme"), is_platform_admin=True)
    everything = text(login_as(platform).get("/auth/dev/outbox"))
    assert "omar@ailleurs.sn" in everything and reader.email in everything


def test_members_page_offers_the_invitation_link_to_copy(app, admin, admin_client):
    response = invite(admin_client, "awa@diop.sn")
    flashed = text(admin_client.get(response.headers["Location"]))
    assert "Aucun serveur d&#39;e-mail n&#39;est configuré" in flashed
    awa = db.session.execute(select(User).where(User.email == "awa@diop.sn")).scalar_one()
    sent_link = link_in(outbox()[-1]["text"])
    row = flashed.split(f'id="member-{awa.id}"', 1)[1].split("</tr>", 1)[0]
    assert "Copier le lien" in row and f'data-copy-text="{sent_link}"' in row
    assert f'href="/auth/dev/outbox?membre={awa.id}"' in row and "Voir le message" in row
    stored = db.session.execute(select(AccountToken).where(AccountToken.user_id == awa.id)).scalar_one()
    assert stored.token_sealed and sent_link.rsplit("/", 1)[1] not in stored.token_sealed

    # A new invitation kills the old link: only the new one is offered.
    token = csrf_of(admin_client, "/users")
    assert admin_client.post(f"/users/{awa.id}/reinvite", data={"csrf_token": token}).status_code == 303
    new_link = link_in(outbox()[-1]["text"])
    page = text(admin_client.get("/users"))
    assert new_link != sent_link and new_link in page and sent_link not in page

    # Once accepted, nothing is offered any more and the sealed token is gone.
    anonymous = app.test_client()
    path = new_link.removeprefix("http://localhost")
    form = csrf_of(anonymous, path)
    accepted = anonymous.post(
        path, data={"csrf_token": form, "name": "Awa Diop", "password": TEST_PASSWORD, "confirm": TEST_PASSWORD}
    )
    assert accepted.status_code == 303, text(accepted)
    page = text(admin_client.get("/users"))
    assert "Copier le lien" not in page and new_link not in page
    assert all(row.token_sealed is None for row in db.session.execute(select(AccountToken)).scalars())


def test_members_page_never_shows_another_organisations_link(admin_client, make_org, make_user, login_as):
    other_admin = make_user("admin", org=make_org("Autre organisation"))
    invite(login_as(other_admin), "omar@ailleurs.sn", name="Omar Ailleurs")
    link = link_in(outbox()[-1]["text"])
    page = text(admin_client.get("/users"))
    assert link not in page and "Copier le lien" not in page


def test_enrolment_code_shows_on_the_members_own_page_without_smtp(make_org, make_user, login_as):
    org = make_org("Exigeante", require_2fa=True)
    user = make_user("lecteur", org=org)
    member = login_as(user)
    token = csrf_of(member, "/auth/2fa/enable")
    response = member.post("/auth/2fa/enable/email", data={"csrf_token": token})
    assert response.status_code == 200
    code = re.search(r"\b(\d{6})\b", outbox()[-1]["text"]).group(1)
    notice = re.search(r'id="dev-email-code".*?</p>', text(response), re.S).group(0)
    assert code in notice
    done = member.post("/auth/2fa/enable", data={"csrf_token": token, "method": "email", "code": code})
    assert done.status_code == 200
    db.session.refresh(user)
    assert user.two_factor_method == "email"
