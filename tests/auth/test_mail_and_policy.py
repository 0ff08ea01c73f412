from __future__ import annotations

import json
from pathlib import Path

from portal.mail import outbox_path, send_mail
from portal.security.password_policy import common_passwords, password_problems
from portal.security.permissions import view_permission
from tests.auth.support import text


def test_account_views_all_declare_a_permission(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in {"auth", "users", "profile"}:
            assert view_permission(app.view_functions[rule.endpoint]) is not None, rule.rule


def test_password_policy():
    assert len(common_passwords()) >= 10_000
    assert password_problems("x" * 11)
    assert password_problems("Password1234")  # in the list, whatever the case
    assert password_problems("ｐａｓｓｗｏｒｄ１２３４")  # NFKC folds full-width forms
    assert password_problems("moussa.diop", "Moussa.Diop@diallo.sn")
    assert password_problems("moussa.diop@diallo.sn", "moussa.diop@diallo.sn")
    assert password_problems("x" * 1025)
    assert password_problems("abcdefghijklmnop") == []
    assert password_problems("пароль очень длинный") == []


def test_mail_without_smtp_goes_to_log_and_dev_outbox(app_factory, make_user, login_as):
    app = app_factory()  # no SMTP_HOST: the embedded default
    with app.app_context():
        send_mail("moussa@diallo.sn", "Sujet de test", "Corps du message 424242\n")
        path = Path(outbox_path())
        entry = json.loads(path.read_text().splitlines()[-1])
    assert entry["to"] == "moussa@diallo.sn" and "424242" in entry["text"]
    admin = make_user("admin")
    platform = make_user("lecteur", is_platform_admin=True)
    client = login_as(admin)
    own_org_only = client.get("/auth/dev/outbox")  # an org admin sees their organisation's invitations
    assert own_org_only.status_code == 200 and "Sujet de test" not in text(own_org_only)
    page = login_as(platform).get("/auth/dev/outbox")
    assert page.status_code == 200 and "Sujet de test" in text(page)


def test_smtp_failure_after_commit_is_not_a_500(app_factory, make_user, login_as):
    from tests.auth.support import _free_port

    closed_port = _free_port()
    app = app_factory(SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port, SMTP_STARTTLS=False)
    from tests.conftest import csrf_token_from

    with app.app_context():
        from portal.extensions import db

        admin = make_user("admin")
        db.session.commit()
        client = app.test_client()
        from portal.auth.sessions import open_session_for

        with client.session_transaction() as session:
            open_session_for(admin, session)
        db.session.commit()
        token = csrf_token_from(client.get("/users").get_data(as_text=True))
        response = client.post(
            "/users/invite", data={"csrf_token": token, "email": "awa@diallo.sn", "name": "Awa", "role": "lecteur"}
        )
        assert response.status_code == 303
        assert "pas pu partir" in client.get("/users").get_data(as_text=True)
