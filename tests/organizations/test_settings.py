"""Organisation settings: name, 2FA policy, session lengths, default language."""

from __future__ import annotations

import html
from datetime import timedelta

from sqlalchemy import select, update

from portal.audit.models import AuditEntry
from portal.auth.models import UserSession
from portal.database import utcnow
from portal.extensions import db
from portal.organizations.models import Organization
from tests.conftest import csrf

URL = "/organisation/parametres"


def _post(client, **fields):
    data = {
        "csrf_token": csrf(client, URL),
        "name": "Cabinet Diallo",
        "session_idle_minutes": "",
        "session_absolute_hours": "",
        "default_locale": "",
    }
    data.update(fields)
    return client.post(URL, data={key: value for key, value in data.items() if value is not None})


def test_admin_changes_the_settings_and_they_are_journalled(app, org, admin_client):
    assert admin_client.get(URL).status_code == 200
    response = _post(
        admin_client, require_2fa="y", session_idle_minutes="15", session_absolute_hours="8", default_locale="en"
    )
    assert response.status_code == 303
    db.session.expire_all()
    saved = db.session.get(Organization, org.id)
    assert (
        saved.name,
        saved.require_2fa,
        saved.session_idle_minutes,
        saved.session_absolute_hours,
        saved.default_locale,
    ) == ("Cabinet Diallo", True, 15, 8, "en")
    entry = db.session.execute(
        select(AuditEntry).where(AuditEntry.action == "organization.settings_changed")
    ).scalar_one()
    assert entry.details == {
        "name": ["Organisation A", "Cabinet Diallo"],
        "require_2fa": [False, True],
        "session_idle_minutes": [None, 15],
        "session_absolute_hours": [None, 8],
        "default_locale": [None, "en"],
    }


def test_saving_unchanged_settings_journals_nothing(app, org, admin_client):
    assert _post(admin_client, name="Organisation A").status_code == 303
    assert (
        db.session.execute(select(AuditEntry).where(AuditEntry.action == "organization.settings_changed")).first()
        is None
    )


def test_bad_values_are_422_with_clear_messages_and_change_nothing(app, org, admin_client):
    cases = [
        ({"name": "   "}, "Donnez un nom à l'organisation."),
        ({"session_idle_minutes": "2"}, "Un nombre de minutes entre 5 et 30"),
        ({"session_idle_minutes": "600"}, "Un nombre de minutes entre 5 et 30"),
        ({"session_idle_minutes": "dix"}, "Un nombre de minutes entre 5 et 30"),
        ({"session_absolute_hours": "48"}, "Un nombre d'heures entre 1 et 12"),
        ({"default_locale": "de"}, "Langue inconnue : choisissez le français ou l'anglais."),
    ]
    for fields, message in cases:
        response = _post(admin_client, **fields)
        assert response.status_code == 422, fields
        assert message in html.unescape(response.get_data(as_text=True)), fields
    db.session.expire_all()
    assert db.session.get(Organization, org.id).name == "Organisation A"
    assert (
        db.session.execute(select(AuditEntry).where(AuditEntry.action == "organization.settings_changed")).first()
        is None
    )


def test_settings_are_for_admins_after_a_recent_proof(app, org, admin_client, contributor_client):
    assert contributor_client.get(URL).status_code == 403
    assert _post(contributor_client).status_code == 403
    db.session.execute(update(UserSession).values(reauth_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    assert _post(admin_client).status_code == 401
    db.session.expire_all()
    assert db.session.get(Organization, org.id).name == "Organisation A"


def test_a_shorter_idle_limit_ends_idle_sessions(app, org, admin, admin_client):
    assert admin_client.get("/").status_code == 200
    org = db.session.get(Organization, org.id)
    org.session_idle_minutes = 10
    db.session.commit()
    db.session.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(minutes=12)))
    db.session.commit()
    assert admin_client.get(URL).status_code == 302  # back to the login page


def test_default_language_applies_to_members_without_their_own(app, org, make_user, login_as):
    org = db.session.get(Organization, org.id)
    org.default_locale = "en"
    db.session.commit()
    undecided = login_as(make_user("lecteur", org=org))
    decided = login_as(make_user("lecteur", org=org, locale="fr"))
    assert '<html lang="en">' in undecided.get("/").get_data(as_text=True)
    assert '<html lang="fr">' in decided.get("/").get_data(as_text=True)


def test_turning_required_2fa_off_is_journalled_and_the_members_page_has_no_second_switch(
    app, org, admin, admin_client
):
    org.require_2fa = True
    admin.two_factor_method = "email"  # enrolled, so the admin is not sent to enrolment
    db.session.commit()
    response = _post(admin_client, name="Organisation A")  # the box left unticked: 2FA no longer required
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Organization, org.id).require_2fa is False
    entry = db.session.execute(
        select(AuditEntry).where(AuditEntry.action == "organization.settings_changed")
    ).scalar_one()
    assert entry.details == {"require_2fa": [True, False]}
    # One place decides the policy: the members page links to it and posts nowhere else.
    members = admin_client.get("/users").get_data(as_text=True)
    assert "/users/securite" not in members and URL in members
    assert admin_client.post("/users/securite", data={"csrf_token": csrf(admin_client, "/users")}).status_code in (
        404,
        405,
    )
