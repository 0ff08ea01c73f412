"""A journal people can read: consultations, names instead of ids, French elision, filters."""

from __future__ import annotations

import html
import threading
from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select, update

from portal.audit.context import Actor
from portal.audit.models import AuditEntry, RecentView
from portal.audit.rendering import sentence, target_type_label, user_names
from portal.audit.services import record
from portal.database import utcnow, write_transaction
from portal.documents.services import armoires, reading
from portal.extensions import db
from tests.documents.conftest import last_file, upload


def _count(action: str) -> int:
    return db.session.execute(select(func.count()).where(AuditEntry.action == action)).scalar_one()


@pytest.fixture
def previewed_file(app, admin, contributor_client):
    armoire = armoires.create_armoire(Actor(admin.organization_id, admin.id), "Comptabilité")
    db.session.commit()
    upload(contributor_client, armoire.id, "photo.png", b"\x89PNG\r\n\x1a\n" + b"x" * 5000)
    return last_file()


def test_a_preview_is_a_consultation_and_repeats_within_a_minute_are_one(app, contributor_client, previewed_file):
    for _ in range(3):
        assert contributor_client.get(f"/fichiers/{previewed_file.id}/apercu").status_code == 200
    assert _count("file.viewed") == 1
    assert _count("file.downloaded") == 0
    # A minute later, the next preview is a new consultation.
    db.session.execute(update(RecentView).values(viewed_at=utcnow() - timedelta(seconds=61)))
    db.session.commit()
    assert contributor_client.get(f"/fichiers/{previewed_file.id}/apercu").status_code == 200
    assert _count("file.viewed") == 2
    assert contributor_client.get(f"/fichiers/{previewed_file.id}/telecharger").status_code == 200
    assert _count("file.downloaded") == 1


def test_two_members_previewing_are_two_consultations(app, admin_client, contributor_client, previewed_file):
    assert contributor_client.get(f"/fichiers/{previewed_file.id}/apercu").status_code == 200
    assert admin_client.get(f"/fichiers/{previewed_file.id}/apercu").status_code == 200
    assert _count("file.viewed") == 2


def test_concurrent_previews_record_one_consultation(app, contributor, previewed_file):
    actor = Actor(contributor.organization_id, contributor.id, ip="192.0.2.4")
    file_id, name = previewed_file.id, previewed_file.name
    barrier = threading.Barrier(6)
    recorded: list[bool] = []
    errors: list[BaseException] = []

    def preview() -> None:
        try:
            with app.app_context(), write_transaction():
                barrier.wait()
                recorded.append(reading.record_view(actor, file_id, name, 1))
                db.session.commit()
        except BaseException as error:  # reported below
            errors.append(error)

    db.session.commit()  # no snapshot of this thread's outlives the writers
    threads = [threading.Thread(target=preview) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(recorded) == [False] * 5 + [True]
    db.session.rollback()
    assert _count("file.viewed") == 1


def _render(entry: AuditEntry, organization_id: int, locale: str) -> str:
    with force_locale(locale):
        # The sentence is HTML (an apostrophe is &#39;): compared as the text a reader sees.
        return html.unescape(str(sentence(entry, user_names([entry], organization_id))))


def test_sentences_name_members_with_french_elision_and_english(app, org, admin, make_user):
    koffi = make_user("lecteur", org=org, name="Koffi Mensah")
    aminata = make_user("admin", org=org, name="Aminata Sow")
    actor = Actor(org.id, aminata.id)
    role = record(
        "user.role_changed",
        actor,
        target_type="user",
        target_id=koffi.id,
        target_label=koffi.email,
        details={"from": "contributeur", "to": "lecteur"},
    )
    login = record("user.login", actor, target_type="user", target_id=aminata.id, target_label=aminata.email)
    koffi_login = record("user.login", Actor(org.id, koffi.id), target_type="user", target_id=koffi.id)
    to_aminata = record(
        "user.role_changed",
        Actor(org.id, admin.id),
        target_type="user",
        target_id=aminata.id,
        details={"from": "lecteur", "to": "admin"},
    )
    viewed = record("file.viewed", actor, target_type="file", target_id=12, target_label="Budget.xlsx")
    db.session.commit()
    with app.test_request_context():
        assert _render(role, org.id, "fr") == "Aminata Sow a changé le rôle de Koffi Mensah en lecteur"
        assert _render(login, org.id, "fr") == "Connexion d'Aminata Sow"
        assert _render(koffi_login, org.id, "fr") == "Connexion de Koffi Mensah"
        assert _render(to_aminata, org.id, "fr") == "Aminata Admin a changé le rôle d'Aminata Sow en administrateur"
        assert _render(viewed, org.id, "fr") == "Aminata Sow a consulté le fichier “Budget.xlsx”"
        assert _render(role, org.id, "en") == "Aminata Sow changed Koffi Mensah's role to reader"
        assert _render(login, org.id, "en") == "Aminata Sow signed in"
        assert _render(viewed, org.id, "en") == "Aminata Sow viewed the file “Budget.xlsx”"
        for entry in (role, login, koffi_login, to_aminata, viewed):
            assert "ID=" not in _render(entry, org.id, "fr") and str(koffi.id) not in _render(entry, org.id, "en")


def test_a_forbidden_attempt_says_which_action(app, org, reader, reader_client):
    assert reader_client.get("/users").status_code == 403
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "security.forbidden")).scalar_one()
    assert entry.details == {"permission": "user.manage", "method": "GET", "path": "/users"}
    with app.test_request_context():
        french = _render(entry, org.id, "fr")
        assert french == "Léa Lectrice a tenté une action non autorisée : gérer les membres (/users)"
        assert _render(entry, org.id, "en") == "Léa Lectrice attempted an unauthorised action: manage members (/users)"


def test_target_types_are_translated_in_the_filter(app, admin_client):
    french = admin_client.get("/journal").get_data(as_text=True)
    assert '<option value="api_token" >Jeton d&#39;accès</option>' in french or ">Jeton d&#39;accès<" in french
    assert '<option value="folder" >Dossier</option>' in french
    admin_client.set_cookie("coffre_lang", "en")
    english = admin_client.get("/journal").get_data(as_text=True)
    assert '<option value="folder" >Folder</option>' in english and ">Member<" in english
    with app.test_request_context(), force_locale("en"):
        assert target_type_label("master_key") == "Encryption key"
