from __future__ import annotations

from sqlalchemy import select

from portal.auth.models import User
from portal.extensions import db
from portal.organizations.models import Organization
from tests.auth.support import csrf_of, journal_actions, login, text

STRONG = "un cheval agrafe la batterie"


def register(client, email="awa@diallo.sn", password=STRONG, org="Cabinet Diallo", name="Awa Diallo", **headers):
    token = csrf_of(client, "/auth/register")
    return client.post(
        "/auth/register",
        data={"csrf_token": token, "organization_name": org, "name": name, "email": email, "password": password},
        headers=headers,
    )


def complete(client, inbox, email="awa@diallo.sn"):
    """Open the link mailed to ``email`` and confirm: the account exists from then on."""
    link = inbox.link_for(email, "/auth/register/")
    return client.post(link, data={"csrf_token": csrf_of(client, link)})


def test_register_mails_a_link_that_creates_org_admin_and_logs_in(client, inbox):
    response = register(client)
    assert response.status_code == 200 and "Vérifiez votre messagerie" in text(response)
    assert db.session.execute(select(User)).first() is None
    assert "/auth/register/" in inbox.body(inbox.last_to("awa@diallo.sn"))
    assert complete(client, inbox).status_code == 303
    user = db.session.execute(select(User).where(User.email == "awa@diallo.sn")).scalar_one()
    assert user.role == "admin" and user.email_confirmed_at is not None
    org = db.session.get(Organization, user.organization_id)
    assert org.name == "Cabinet Diallo" and org.require_2fa is True
    assert user.password_hash.startswith("$2b$")
    assert journal_actions(org.id) == ["organization.created", "user.registered", "user.login"]
    # Logged in, and led to 2FA enrolment because the new organisation requires it.
    home = client.get("/")
    assert home.status_code == 303 and home.headers["Location"].endswith("/auth/2fa/enable")


def test_register_page_in_english(client):
    client.set_cookie("coffre_lang", "en")
    assert '<html lang="en">' in text(client.get("/auth/register"))
    response = register(client, password="short")
    assert response.status_code == 422
    assert "The password must contain at least 12 characters." in text(response)


def test_register_refuses_short_common_and_email_passwords(client):
    response = register(client, password="court")
    assert response.status_code == 422
    assert "au moins 12 caractères" in text(response)
    response = register(client, password="password1234")
    assert response.status_code == 422
    assert "plus courants" in text(response)
    response = register(client, email="bintou.kone.abidjan@diallo.sn", password="Bintou.Kone.Abidjan")
    assert response.status_code == 422
    assert "adresse e-mail" in text(response)
    assert db.session.execute(select(User)).first() is None


def test_sixteen_lowercase_letters_are_enough(client):
    assert register(client, password="abcdefghijklmnopzz").status_code == 200


def test_register_with_taken_email_answers_as_usual_and_warns_the_owner(client, make_user, inbox):
    make_user("lecteur", email="pris@diallo.sn")
    response = register(client, email="Pris@Diallo.sn")
    assert response.status_code == 200 and "existe déjà" not in text(response)
    assert "essayer de créer" in inbox.body(inbox.last_to("pris@diallo.sn"))
    assert db.session.execute(select(Organization).where(Organization.name == "Cabinet Diallo")).first() is None


def test_long_unicode_password_is_used_in_full(client, app, inbox):
    password = "é€" * 40  # 80 characters, 200 bytes: far past bcrypt's 72
    assert register(client, password=password).status_code == 200
    assert complete(client, inbox).status_code == 303
    user = db.session.execute(select(User)).scalar_one()
    user.organization.require_2fa = False
    db.session.commit()
    other = app.test_client()
    assert login(other, user.email, password).status_code == 303
    truncated = password.encode()[:72].decode("utf-8", errors="ignore")
    assert login(app.test_client(), user.email, truncated).status_code == 422
    assert login(app.test_client(), user.email, password.upper()).status_code == 422
    assert login(app.test_client(), user.email, password[:-1] + "x").status_code == 422


def test_registration_is_rate_limited(app_factory, smtp_server):
    app = app_factory(RATELIMIT_ENABLED=True, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server[1], SMTP_STARTTLS=False)
    client = app.test_client()
    statuses = [register(client, password="x").status_code for _ in range(6)]
    assert statuses[:5] == [422] * 5
    assert statuses[5] == 429


def test_without_smtp_the_registration_page_shows_the_link_it_mailed(app_factory):
    """The embedded default has no SMTP: a first visitor must still be able to finish."""
    import re

    app = app_factory(SMTP_HOST=None)
    with app.app_context():
        client = app.test_client()
        response = register(client, email="koffi@mensah.tg", org="Mensah SARL", name="Koffi Mensah")
        page = text(response)
        assert response.status_code == 200 and 'id="dev-register-message"' in page, page
        link = re.search(r'href="(http://[^"]*/auth/register/[^"]+)"', page).group(1)
        path = link.split("localhost", 1)[1]
        assert client.post(path, data={"csrf_token": csrf_of(client, path)}).status_code == 303
        user = db.session.execute(select(User).where(User.email == "koffi@mensah.tg")).scalar_one()
        assert user.role == "admin"


def test_with_smtp_the_registration_page_shows_no_message(client, inbox):
    page = text(register(client))
    assert "dev-register-message" not in page and "/auth/register/" not in page


def test_htmx_registration_answers_a_fragment_not_a_nested_page(client, inbox):
    response = register(client, **{"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in text(response) and 'id="register-sent"' in text(response)
