"""Every figure of both dashboards against a hand-computed fixture, the permission rules,
the period switch, the JSON API and the number formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.audit.services import record
from portal.extensions import db
from tests.dashboard.conftest import on_day


def _day(days_ago: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days_ago)).isoformat()


def _token(user) -> dict[str, str]:
    from portal.api import services

    _token_row, secret = services.create_token(user, Actor(user.organization_id, user.id), name="tableau", days=1)
    db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(app, monkeypatch, org, admin, contributor, reader, make_user, docs):
    """Hand-computed: see each expected figure in the tests below."""
    from portal.documents.services import folders

    org.storage_quota_bytes = 1000
    admin.two_factor_method = "totp"
    make_user("lecteur", org=org, active=False)  # not counted: deactivated
    db.session.commit()
    with on_day(monkeypatch, 10):
        compta = docs.armoire(admin, "Comptabilité")
        rh = docs.armoire(admin, "RH")
        contrat = docs.upload(admin, rh, "contrat.pdf", b"c" * 10)
    with on_day(monkeypatch, 3):
        bilan = docs.upload(contributor, compta, "bilan.pdf", b"b" * 100)
        docs.download(admin, bilan, ip="192.0.2.7")
        docs.download(admin, bilan, ip="192.0.2.7")
    with on_day(monkeypatch, 1):
        docs.new_version(contributor, bilan, b"v" * 50)
        docs.trash(contributor, contrat)
    folders.create_folder(Actor(org.id, admin.id), compta, None, "2026")
    record(
        "user.login",
        Actor(
            org.id,
            contributor.id,
            ip="198.51.100.4",
            user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        target_type="user",
        target_id=contributor.id,
    )
    db.session.commit()
    return {"compta": compta, "rh": rh, "bilan": bilan, "contrat": contrat}


def test_global_figures_by_period(app, client, admin, world):
    headers = _token(admin)
    week = client.get("/api/v1/dashboard/global?periode=7", headers=headers).get_json()
    assert {key: week[key] for key in ("armoires", "folders", "documents", "versions")} == {
        "armoires": 2,
        "folders": 1,
        "documents": 1,  # contrat.pdf is in the trash
        "versions": 2,  # bilan.pdf v1 and v2
    }
    assert week["members"] == {"admin": 1, "contributeur": 1, "lecteur": 1}
    assert week["bytes_used"] == 160  # the trash still counts against the quota
    assert week["quota_bytes"] == 1000
    assert week["two_factor"] == {"enabled": 1, "members": 3}
    assert len(week["activity"]) == 7 and week["activity"][-1]["date"] == _day(0)
    busy = {day["date"]: day for day in week["activity"] if day["uploads"] or day["downloads"] or day["deletions"]}
    assert busy == {
        _day(3): {"date": _day(3), "uploads": 1, "downloads": 2, "deletions": 0},
        _day(1): {"date": _day(1), "uploads": 1, "downloads": 0, "deletions": 1},
    }
    assert week["top_armoires_by_size"] == [
        {"id": world["compta"].id, "name": "Comptabilité", "bytes": 150},
        {"id": world["rh"].id, "name": "RH", "bytes": 10},
    ]
    # Comptabilité: added, 2 downloads, new version, folder created; RH: the trashing.
    assert [(a["name"], a["entries"]) for a in week["top_armoires_by_activity"]] == [("Comptabilité", 5), ("RH", 1)]

    month = client.get("/api/v1/dashboard/global?periode=30", headers=headers).get_json()
    assert len(month["activity"]) == 30
    totals = {key: sum(day[key] for day in month["activity"]) for key in ("uploads", "downloads", "deletions")}
    assert totals == {"uploads": 3, "downloads": 2, "deletions": 1}
    # Each armoire's own creation now falls in the period too; RH also has contrat.pdf's upload.
    assert [(a["name"], a["entries"]) for a in month["top_armoires_by_activity"]] == [("Comptabilité", 6), ("RH", 3)]
    assert len(client.get("/api/v1/dashboard/global?periode=365", headers=headers).get_json()["activity"]) == 365
    assert client.get("/api/v1/dashboard/global", headers=headers).get_json()["periode"] == 30


def test_a_new_upload_shows_at_once(app, client, admin, world, docs):
    headers = _token(admin)
    before = client.get("/api/v1/dashboard/global?periode=7", headers=headers).get_json()
    docs.upload(admin, world["rh"], "nouveau.pdf", b"n" * 7)
    after = client.get("/api/v1/dashboard/global?periode=7", headers=headers).get_json()
    assert after["documents"] == before["documents"] + 1
    assert after["bytes_used"] == before["bytes_used"] + 7
    assert after["activity"][-1]["uploads"] == before["activity"][-1]["uploads"] + 1


def test_member_figures(app, client, admin, contributor, world):
    body = client.get(f"/api/v1/dashboard/utilisateur/{contributor.id}?periode=7", headers=_token(admin)).get_json()
    assert body["user_id"] == contributor.id
    assert body["actions"] == {"file.added": 1, "file.deleted": 1, "file.modified": 1, "user.login": 1}
    per_day = {day["date"]: day for day in body["per_day"] if day["total"]}
    assert per_day == {
        _day(3): {"date": _day(3), "total": 1, "actions": {"file.added": 1}},
        _day(1): {"date": _day(1), "total": 2, "actions": {"file.deleted": 1, "file.modified": 1}},
        _day(0): {"date": _day(0), "total": 1, "actions": {"user.login": 1}},
    }
    assert body["files_touched"] == 2  # bilan.pdf (twice, counted once) and contrat.pdf
    [login] = body["last_logins"]
    assert login["ip"] == "198.51.100.4" and login["device"] == "Firefox sur Linux"

    admin_body = client.get(f"/api/v1/dashboard/utilisateur/{admin.id}?periode=30", headers=_token(admin)).get_json()
    assert admin_body["actions"] == {
        "armoire.created": 2,
        "file.added": 1,
        "file.downloaded": 2,
        "folder.created": 1,
        "token.created": 2,  # the two bearer tokens of this test
    }
    assert admin_body["files_touched"] == 2  # contrat.pdf uploaded, bilan.pdf downloaded


def test_member_page_shows_the_same_figures(app, login_as, contributor, world):
    page = login_as(contributor).get(f"/dashboard/utilisateur/{contributor.id}?periode=7")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "198.51.100.4" in html and "Firefox sur Linux" in html
    assert "Actions sur 7 jours : 4 ;" in html
    assert "data-chart=" in html and "<table>" in html


def test_global_page_and_period_switch(app, admin_client, world):
    page = admin_client.get("/dashboard/global?periode=7")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sur 7 jours — dépôts : 2, téléchargements : 2, suppressions : 1." in html
    assert "160\u00a0o" in html and "16\u00a0% du quota de 1\u00a0000\u00a0o" in html.replace("\u202f", "\u00a0")
    assert "<script>" not in html and "style=" not in html
    fragment = admin_client.get("/dashboard/global?periode=30", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and 'id="tableau-de-bord"' in body
    assert "Sur 30 jours — dépôts : 3," in body
    assert 'aria-current="true">30 jours' in body
    year = admin_client.get("/dashboard/global?periode=365").get_data(as_text=True)
    assert "12 mois" in year


def test_an_unknown_period_is_a_clear_422(app, admin_client, client, admin, world):
    page = admin_client.get("/dashboard/global?periode=8")
    assert page.status_code == 422 and "Période inconnue" in page.get_data(as_text=True)
    api = client.get("/api/v1/dashboard/global?periode=abc", headers=_token(admin))
    assert api.status_code == 422 and api.mimetype == "application/problem+json"


def _forbidden_count(org_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.organization_id == org_id, AuditEntry.action == "security.forbidden")
    ).scalar_one()


def test_permissions(app, client, login_as, org, admin, contributor, reader, make_org, make_user):
    other = make_user("admin", org=make_org("Organisation B"))
    reader_client, contributor_client = login_as(reader), login_as(contributor)
    assert reader_client.get("/dashboard/global").status_code == 403
    assert contributor_client.get("/dashboard/global").status_code == 403
    assert contributor_client.get(f"/dashboard/utilisateur/{admin.id}").status_code == 403
    assert _forbidden_count(org.id) == 3  # each refusal is in the journal
    assert contributor_client.get(f"/dashboard/utilisateur/{contributor.id}").status_code == 200
    assert reader_client.get(f"/dashboard/utilisateur/{reader.id}").status_code == 200
    admin_client = login_as(admin)
    assert admin_client.get(f"/dashboard/utilisateur/{contributor.id}").status_code == 200
    assert admin_client.get(f"/dashboard/utilisateur/{other.id}").status_code == 404
    assert admin_client.get("/dashboard/plateforme").status_code == 403

    assert client.get("/api/v1/dashboard/global", headers=_token(reader)).status_code == 403
    assert client.get(f"/api/v1/dashboard/utilisateur/{admin.id}", headers=_token(contributor)).status_code == 403
    assert client.get(f"/api/v1/dashboard/utilisateur/{contributor.id}", headers=_token(contributor)).status_code == 200
    api_other = client.get(f"/api/v1/dashboard/utilisateur/{other.id}", headers=_token(admin))
    assert api_other.status_code == 404 and api_other.mimetype == "application/problem+json"


def test_platform_view(app, login_as, make_org, make_user, admin, world):
    platform_admin = make_user("admin", org=make_org("Plateforme"), is_platform_admin=True)
    html = login_as(platform_admin).get("/dashboard/plateforme").get_data(as_text=True)
    assert "Organisation A" in html and "Plateforme" in html
    assert "160\u00a0o" in html and "1\u202f000\u00a0o" in html


def test_numbers_follow_the_members_language(app):
    from flask_babel import force_locale

    from portal.dashboard.formatting import device_name, number, size

    with app.test_request_context():
        with force_locale("fr"):
            assert number(1234567) == "1\u202f234\u202f567"
            assert size(1536 * 1024) == "1,5\u00a0Mio"
            assert str(device_name("coffre-desktop/1")) == "Application Coffre"
        with force_locale("en"):
            assert number(1234567) == "1,234,567"
            assert size(1536 * 1024) == "1.5\u00a0MiB"
            assert str(device_name(None)) == "Unknown device"


def test_the_last_backup_and_its_verification(app, login_as, admin, org, make_org):
    from portal.backups.models import Backup

    headers = _token(admin)
    assert app.test_client().get("/api/v1/dashboard/global", headers=headers).get_json()["last_backup"] is None
    older = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    newer = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    db.session.add_all(
        [
            Backup(organization_id=org.id, created_at=older, trigger="manuel", status="reussie"),
            Backup(
                organization_id=org.id,
                created_at=newer,
                trigger="planifie",
                status="verifiee",
                verified_at=newer + timedelta(hours=1),
                verification_ok=True,
            ),
            # Another organisation's, newer still: never shown here.
            Backup(organization_id=make_org("Autre").id, created_at=newer + timedelta(days=1), trigger="manuel"),
        ]
    )
    db.session.commit()
    last = app.test_client().get("/api/v1/dashboard/global", headers=headers).get_json()["last_backup"]
    assert last["created_at"].startswith("2026-11-20T08:00") and last["status"] == "verifiee"
    assert last["verification_ok"] is True and last["verified_at"].startswith("2026-11-20T09:00")
    page = login_as(admin).get("/dashboard/global").get_data(as_text=True)
    card = page[page.index('id="derniere-sauvegarde"') :].split("</article>")[0]
    assert "Vérifiée" in card and "correcte" in card
