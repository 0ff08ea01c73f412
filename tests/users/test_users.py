from __future__ import annotations

from sqlalchemy import select

from portal.auth.models import User
from portal.extensions import db
from tests.auth.support import csrf_of, journal_actions, login, text
from tests.conftest import TEST_PASSWORD

NEW_PASSWORD = "une phrase de passe solide"


def put_role(client, user_id, role, **extra):
    token = csrf_of(client, "/me")
    return client.put(
        f"/users/{user_id}", data={"csrf_token": token, "role": role, **extra}, headers={"HX-Request": "true"}
    )


def test_members_list_search_and_pagination(admin_client, admin, make_user):
    for number in range(25):
        make_user("lecteur", org=admin.organization, name=f"Membre {number:02d}")
    make_user("lecteur", org=admin.organization, name="Ousmane Sow")
    page = text(admin_client.get("/users"))
    assert "Membre 00" in page and 'rel="next"' in page
    second = admin_client.get("/users?page=2", headers={"HX-Request": "true"})
    assert second.status_code == 200 and '<div id="members">' in text(second) and "<html" not in text(second)
    found = text(admin_client.get("/users?q=ousmane", headers={"HX-Request": "true"}))
    assert "Ousmane Sow" in found and "Membre 01" not in found
    nothing = text(admin_client.get("/users?q=%25_zzz", headers={"HX-Request": "true"}))
    assert "Aucun membre" in nothing


def test_members_of_other_orgs_are_not_listed(admin_client, make_org, make_user):
    other = make_user("admin", org=make_org("Autre"), name="Étranger Total")
    assert "Étranger Total" not in text(admin_client.get("/users"))
    assert put_role(admin_client, other.id, "lecteur").status_code == 404
    token = csrf_of(admin_client, "/users")
    assert admin_client.post(f"/users/{other.id}/deactivate", data={"csrf_token": token}).status_code == 404
    assert db.session.get(User, other.id).role == "admin"


def test_readers_and_contributors_get_403(reader_client, contributor_client, reader):
    for member_client in (reader_client, contributor_client):
        assert member_client.get("/users").status_code == 403
        token = csrf_of(member_client, "/me")
        assert member_client.post("/users/invite", data={"csrf_token": token}).status_code == 403
        assert put_role(member_client, reader.id, "admin").status_code == 403
    assert journal_actions(reader.organization_id).count("security.forbidden") == 6


def test_invitation_flow(admin_client, admin, app, inbox):
    token = csrf_of(admin_client, "/users")
    response = admin_client.post(
        "/users/invite",
        data={"csrf_token": token, "email": "Kadi@Diallo.sn", "name": "Kadi Traoré", "role": "contributeur"},
    )
    assert response.status_code == 303
    invited = db.session.execute(select(User).where(User.email == "kadi@diallo.sn")).scalar_one()
    assert invited.password_hash is None and invited.role == "contributeur"
    assert invited.organization_id == admin.organization_id
    link = inbox.link_for("kadi@diallo.sn", "/auth/invitation/")
    guest = app.test_client()
    page = guest.get(link)
    assert page.status_code == 200 and "Kadi Traoré" in text(page)
    weak = guest.post(
        link, data={"csrf_token": csrf_of(guest, link), "name": "Kadi", "password": "court", "confirm": "court"}
    )
    assert weak.status_code == 422
    done = guest.post(
        link,
        data={"csrf_token": csrf_of(guest, link), "name": "Kadi T.", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert done.status_code == 303
    assert guest.get("/me").status_code == 200
    assert app.test_client().get(link).status_code == 404  # single use
    actions = journal_actions(admin.organization_id)
    assert "user.invited" in actions and "user.invitation_accepted" in actions
    assert login(app.test_client(), "kadi@diallo.sn", NEW_PASSWORD).status_code == 303


def test_invitation_expires(admin_client, app, inbox, clock):
    token = csrf_of(admin_client, "/users")
    admin_client.post(
        "/users/invite", data={"csrf_token": token, "email": "tard@diallo.sn", "name": "Tard", "role": "lecteur"}
    )
    link = inbox.link_for("tard@diallo.sn", "/auth/invitation/")
    clock.advance(days=7, seconds=1)
    assert app.test_client().get(link).status_code == 404


def test_invite_existing_email_is_a_conflict(admin_client, reader):
    token = csrf_of(admin_client, "/users")
    response = admin_client.post(
        "/users/invite", data={"csrf_token": token, "email": reader.email, "name": "Double", "role": "lecteur"}
    )
    assert response.status_code in (409, 422)
    invalid_role = admin_client.post(
        "/users/invite", data={"csrf_token": token, "email": "x@diallo.sn", "name": "X", "role": "roi"}
    )
    assert invalid_role.status_code == 422


def test_role_change_by_htmx_put(admin_client, admin, reader):
    response = put_role(admin_client, reader.id, "contributeur")
    assert response.status_code == 200
    assert "Rôle mis à jour" in text(response) and "<html" not in text(response)
    assert db.session.get(User, reader.id).role == "contributeur"
    assert "user.role_changed" in journal_actions(admin.organization_id)
    assert put_role(admin_client, reader.id, "empereur").status_code == 422


def test_last_admin_cannot_be_demoted_or_deactivated(admin_client, admin, make_user):
    response = put_role(admin_client, admin.id, "lecteur")
    assert response.status_code == 409
    assert "dernier administrateur actif" in text(response)
    assert db.session.get(User, admin.id).role == "admin"
    admin_client.set_cookie("coffre_lang", "en")
    admin.locale = None
    english = put_role(admin_client, admin.id, "lecteur")
    assert english.status_code == 409 and "is the last active administrator" in text(english)
    second = make_user("admin", org=admin.organization)
    token = csrf_of(admin_client, "/users")
    assert admin_client.post(f"/users/{second.id}/deactivate", data={"csrf_token": token}).status_code == 303
    # Now `admin` is the last active admin again.
    assert put_role(admin_client, admin.id, "contributeur").status_code == 409
    assert admin_client.post(f"/users/{admin.id}/deactivate", data={"csrf_token": token}).status_code == 409
    assert admin_client.post(f"/users/{second.id}/reactivate", data={"csrf_token": token}).status_code == 303
    assert put_role(admin_client, admin.id, "contributeur").status_code == 200
    actions = journal_actions(admin.organization_id)
    assert "user.deactivated" in actions and "user.reactivated" in actions


def test_role_change_asks_for_the_password_again_after_ten_minutes(admin_client, admin, reader, clock):
    clock.advance(minutes=11)
    asked = put_role(admin_client, reader.id, "contributeur")
    assert asked.status_code == 401
    assert 'name="reauth_password"' in text(asked) and 'name="role" value="contributeur"' in text(asked)
    assert db.session.get(User, reader.id).role == "lecteur"
    wrong = put_role(admin_client, reader.id, "contributeur", reauth_password="pas le bon mot de passe")
    assert wrong.status_code == 401 and "incorrect" in text(wrong)
    done = put_role(admin_client, reader.id, "contributeur", reauth_password=TEST_PASSWORD)
    assert done.status_code == 200
    assert db.session.get(User, reader.id).role == "contributeur"
    # Fresh for the next ten minutes.
    assert put_role(admin_client, reader.id, "lecteur").status_code == 200


def test_invitation_can_be_sent_again_and_the_old_link_dies(admin_client, admin, app, inbox, reader):
    token = csrf_of(admin_client, "/users")
    admin_client.post(
        "/users/invite", data={"csrf_token": token, "email": "oubli@diallo.sn", "name": "Oubli", "role": "lecteur"}
    )
    first = inbox.link_for("oubli@diallo.sn", "/auth/invitation/")
    invited = db.session.execute(select(User).where(User.email == "oubli@diallo.sn")).scalar_one()
    assert "Renvoyer l'invitation" in text(admin_client.get("/users"))
    assert admin_client.post(f"/users/{invited.id}/reinvite", data={"csrf_token": token}).status_code == 303
    second = inbox.link_for("oubli@diallo.sn", "/auth/invitation/")
    assert second != first
    guest = app.test_client()
    assert guest.get(first).status_code == 404
    assert guest.get(second).status_code == 200
    # A member who already has a password cannot be re-invited.
    assert admin_client.post(f"/users/{reader.id}/reinvite", data={"csrf_token": token}).status_code == 409
