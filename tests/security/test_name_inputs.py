"""Names typed by people or sent by clients lose control and bidi characters at input.

Decision: strip silently (what a person expects: the name they meant, minus invisible
characters), fold any whitespace run to one space, NFC-normalise; a name that is empty
once cleaned is refused like an empty one (422 naming the field).
"""

from __future__ import annotations

from sqlalchemy import select

from portal.api.models import ApiToken
from portal.api.routes import DEFAULT_TOKEN_NAME
from portal.auth.models import User
from portal.extensions import db
from portal.organizations.models import Organization
from tests.auth.support import csrf_of
from tests.conftest import TEST_PASSWORD

FORGED = "Awa\r\n[audit] admin deleted all\x1b[31m\u202e"
CLEANED = "Awa [audit] admin deleted all[31m"
NEW_PASSWORD = "une phrase de passe solide"


def test_registration_cleans_member_and_organisation_names(client, inbox):
    token = csrf_of(client, "/auth/register")
    response = client.post(
        "/auth/register",
        data={
            "csrf_token": token,
            "organization_name": "Cabinet\x9b Diallo\u2066",
            "name": FORGED,
            "email": "awa@diallo.sn",
            "password": "un cheval agrafe la batterie",
        },
    )
    assert response.status_code == 200
    # Registration creates the account from the mailed link.
    link = inbox.link_for("awa@diallo.sn", "/auth/register/")
    assert client.post(link, data={"csrf_token": csrf_of(client, link)}).status_code == 303
    user = db.session.execute(select(User).where(User.email == "awa@diallo.sn")).scalar_one()
    assert user.name == CLEANED
    assert db.session.get(Organization, user.organization_id).name == "Cabinet Diallo"


def test_a_name_made_only_of_controls_is_refused(client):
    token = csrf_of(client, "/auth/register")
    response = client.post(
        "/auth/register",
        data={
            "csrf_token": token,
            "organization_name": "Cabinet",
            "name": "\x1b\r\n\u202e",
            "email": "awa@diallo.sn",
            "password": "un cheval agrafe la batterie",
        },
    )
    assert response.status_code == 422
    assert db.session.execute(select(User).where(User.email == "awa@diallo.sn")).scalar_one_or_none() is None


def test_profile_cleans_the_name(reader_client, reader):
    response = reader_client.post(
        "/me", data={"csrf_token": csrf_of(reader_client, "/me"), "name": FORGED, "locale": "fr"}
    )
    assert response.status_code == 303
    db.session.refresh(reader)
    assert reader.name == CLEANED


def test_invitation_and_its_acceptance_clean_the_name(admin_client, app, inbox):
    token = csrf_of(admin_client, "/users")
    response = admin_client.post(
        "/users/invite",
        data={"csrf_token": token, "email": "kadi@diallo.sn", "name": FORGED, "role": "lecteur"},
    )
    assert response.status_code == 303
    invited = db.session.execute(select(User).where(User.email == "kadi@diallo.sn")).scalar_one()
    assert invited.name == CLEANED
    link = inbox.link_for("kadi@diallo.sn", "/auth/invitation/")
    guest = app.test_client()
    done = guest.post(
        link,
        data={
            "csrf_token": csrf_of(guest, link),
            "name": "Kadi\x1b[2J\tT.",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert done.status_code == 303
    db.session.refresh(invited)
    assert invited.name == "Kadi[2J T."


def test_token_page_cleans_the_token_name(contributor_client):
    token = csrf_of(contributor_client, "/me/jetons")
    created = contributor_client.post("/me/jetons", data={"csrf_token": token, "name": FORGED, "days": "7"})
    assert created.status_code == 201
    assert db.session.execute(select(ApiToken.name)).scalar_one() == CLEANED


def test_api_cleans_the_token_name(client, contributor):
    url = "/api/v1/auth/token"
    ok = client.post(url, json={"email": contributor.email, "password": TEST_PASSWORD, "name": FORGED})
    assert ok.status_code == 201 and ok.get_json()["name"] == CLEANED
    # The field is optional and the schema takes any string: nothing visible means the default name.
    invisible = client.post(url, json={"email": contributor.email, "password": TEST_PASSWORD, "name": "\u202e\x1b"})
    assert invisible.status_code == 201
    assert invisible.get_json()["name"] == DEFAULT_TOKEN_NAME
