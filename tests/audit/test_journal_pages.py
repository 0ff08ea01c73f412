"""The /journal page, its filters, keyset pages, exports and activity views."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import sqlalchemy as sa

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.audit.services import record
from portal.extensions import db
from tests.audit.helpers import add_entries

HX = {"HX-Request": "true"}


def _ids_in(html: str) -> list[int]:
    return [int(value) for value in re.findall(r'id="entree-(\d+)"', html)]


def _entries(org_id: int, action: str | None = None) -> list[AuditEntry]:
    statement = sa.select(AuditEntry).where(AuditEntry.organization_id == org_id).order_by(AuditEntry.id)
    if action:
        statement = statement.where(AuditEntry.action == action)
    return list(db.session.execute(statement).scalars())


@pytest.mark.parametrize("path", ["/journal", "/journal/export.csv", "/journal/export.json", "/journal/verification"])
def test_lecteur_and_contributeur_are_refused(reader_client, contributor_client, path):
    for client in (reader_client, contributor_client):
        assert client.get(path).status_code == 403


def test_anonymous_is_sent_to_login(client):
    response = client.get("/journal")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_admin_sees_sentences_newest_first_and_only_own_organisation(admin_client, admin, org, make_org, make_user):
    add_entries(org, admin, 3, label="ContratRH-{n}.pdf", action="file.deleted")
    other = make_org("Organisation B")
    add_entries(other, make_user("admin", org=other), 2, label="Secret-{n}.pdf")
    response = admin_client.get("/journal")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Secret-" not in html
    ids = _ids_in(html)
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    assert (
        f'<a href="/journal/utilisateurs/{admin.id}">Aminata Admin</a> a supprimé le fichier “ContratRH-3.pdf”' in html
    )
    assert 'hx-trigger="load"' in html and "/journal/verification" in html


def test_labels_are_escaped_and_control_characters_shown(admin_client, admin, org):
    record(
        "file.added",
        Actor(org.id, admin.id),
        target_type="file",
        target_id=1,
        target_label='"><img src=x onerror=alert(1)>\r\n[2025-01-01] admin a tout supprimé\x1b[31m',
    )
    db.session.commit()
    html = admin_client.get("/journal").get_data(as_text=True)
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\\r\\n[2025-01-01] admin a tout supprimé\\x1b[31m" in html
    assert "\x1b" not in html


def test_filters_combine_and_apply_as_fragment(admin_client, admin, contributor, org):
    add_entries(org, admin, 2, action="file.added", label="Facture-{n}.pdf")
    add_entries(org, contributor, 3, action="file.deleted", label="Facture-{n}.pdf")
    add_entries(org, contributor, 2, action="file.added", label="Devis_{n}.pdf")
    add_entries(org, contributor, 1, action="armoire.created", label="Comptabilité", target_type="armoire")
    query = f"/journal?utilisateur={contributor.id}&action=file.added"
    response = admin_client.get(query, headers=HX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="journal-results"')  # a fragment, not the page
    expected = [e.id for e in _entries(org.id, "file.added") if e.user_id == contributor.id]
    assert _ids_in(html) == sorted(expected, reverse=True)

    by_type = _ids_in(admin_client.get("/journal?type=armoire").get_data(as_text=True))
    assert by_type == [e.id for e in _entries(org.id, "armoire.created")]

    # Free text is case-insensitive and its wildcards are literal.
    assert len(_ids_in(admin_client.get("/journal?q=facture").get_data(as_text=True))) == 5
    assert len(_ids_in(admin_client.get("/journal?q=devis_").get_data(as_text=True))) == 2
    assert _ids_in(admin_client.get("/journal?q=%25").get_data(as_text=True)) == []


def test_date_range_filter(admin_client, admin, org):
    entries = add_entries(org, admin, 3)
    old = entries[0]
    db.session.execute(
        sa.update(AuditEntry).where(AuditEntry.id == old.id).values(created_at=old.created_at.replace(year=2020))
    )
    db.session.commit()
    in_2020 = _ids_in(admin_client.get("/journal?du=2020-01-01&au=2020-12-31").get_data(as_text=True))
    assert in_2020 == [old.id]
    since = _ids_in(admin_client.get("/journal?du=2021-01-01").get_data(as_text=True))
    assert old.id not in since and len(since) == 2


@pytest.mark.parametrize(
    "query",
    [
        "du=2025-13-01",
        "action=file.hacked",
        "utilisateur=abc",
        "type=planet",
        "du=2025-02-01&au=2025-01-01",
        "q=" + "x" * 101,
    ],
)
def test_bad_filters_answer_422_with_a_message(admin_client, query):
    response = admin_client.get(f"/journal?{query}")
    assert response.status_code == 422
    assert 'class="flash flash-error"' in response.get_data(as_text=True)
    assert admin_client.get(f"/journal/export.csv?{query}").status_code == 422


def test_keyset_pages_walk_the_whole_journal(admin_client, admin, org):
    add_entries(org, admin, 120)
    all_ids = sorted((e.id for e in _entries(org.id)), reverse=True)
    seen: list[int] = []
    url = "/journal"
    while url:
        html = admin_client.get(url).get_data(as_text=True)
        seen.extend(_ids_in(html))
        match = re.search(r'href="(/journal\?avant=\d+[^"]*)"[^>]*rel="next"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert seen == all_ids
    assert admin_client.get("/journal?avant=notanumber").status_code == 200


def test_keyset_pages_keep_the_filter(admin_client, admin, contributor, org):
    add_entries(org, admin, 60)
    add_entries(org, contributor, 60)
    html = admin_client.get(f"/journal?utilisateur={admin.id}").get_data(as_text=True)
    next_url = re.search(r'href="(/journal\?[^"]*avant=[^"]*)"[^>]*rel="next"', html).group(1).replace("&amp;", "&")
    assert f"utilisateur={admin.id}" in next_url
    second = _ids_in(admin_client.get(next_url).get_data(as_text=True))
    owners = {e.id: e.user_id for e in _entries(org.id)}
    assert len(second) == 10 and {owners[i] for i in second} == {admin.id}


def test_csv_export_streams_the_filter_and_is_journalled(admin_client, admin, contributor, org, make_org):
    add_entries(org, admin, 3, action="file.added", label='=HYPERLINK("http://x")-{n}')
    add_entries(org, contributor, 4, action="file.downloaded")
    add_entries(make_org("Organisation B"), None, 2, action="file.added")
    response = admin_client.get("/journal/export.csv?action=file.added")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [row["action"] for row in rows] == ["file.added"] * 3
    assert all(row["target_label"].startswith("'=HYPERLINK") for row in rows)
    assert rows[0]["user_name"] == "Aminata Admin"
    assert int(rows[0]["id"]) > int(rows[-1]["id"])
    exported = _entries(org.id, "journal.exported")
    assert len(exported) == 1
    assert exported[0].user_id == admin.id
    assert exported[0].details == {"format": "csv", "filter": {"action": "file.added"}}


def test_json_export_covers_more_than_one_batch(admin_client, admin, org, monkeypatch):
    from portal.audit import queries

    monkeypatch.setattr(queries, "EXPORT_BATCH", 7)
    add_entries(org, admin, 30)
    response = admin_client.get(f"/journal/export.json?utilisateur={admin.id}&action=file.added")
    data = json.loads(response.get_data(as_text=True))
    assert len(data) == 30
    assert [item["id"] for item in data] == sorted((item["id"] for item in data), reverse=True)
    assert set(data[0]) >= {"created_at", "action", "target_label", "entry_hash", "seq", "details"}


def test_export_rejects_unknown_formats(admin_client):
    assert admin_client.get("/journal/export.xml").status_code == 404


def test_verification_badge(admin_client, admin, org):
    entries = add_entries(org, admin, 3)
    ok = admin_client.get("/journal/verification", headers=HX)
    assert ok.status_code == 200 and "badge-ok" in ok.get_data(as_text=True)
    db.session.execute(sa.update(AuditEntry).where(AuditEntry.id == entries[1].id).values(target_label="autre"))
    db.session.commit()
    broken = admin_client.get("/journal/verification", headers=HX).get_data(as_text=True)
    assert "badge-danger" in broken and "entrée modifiée au numéro 2" in broken
    verified = _entries(org.id, "journal.verified")
    assert [v.details["ok"] for v in verified] == [True, False]
    assert verified[-1].details["kind"] == "altered"


def test_each_member_sees_their_own_activity(reader_client, reader, admin, org):
    add_entries(org, reader, 2, action="file.downloaded", label="Mine-{n}.pdf")
    add_entries(org, admin, 2, action="file.deleted", label="Theirs-{n}.pdf")
    html = reader_client.get("/journal/moi").get_data(as_text=True)
    assert "Mine-1.pdf" in html and "Theirs" not in html
    assert "/journal/utilisateurs/" not in html  # no admin links for a reader
    assert reader_client.get(f"/journal/utilisateurs/{reader.id}").status_code == 403


def test_admin_sees_a_members_activity_but_not_another_organisations(
    admin_client, contributor, org, make_org, make_user
):
    add_entries(org, contributor, 2, label="Contrib-{n}.pdf")
    page = admin_client.get(f"/journal/utilisateurs/{contributor.id}")
    assert page.status_code == 200 and "Contrib-2.pdf" in page.get_data(as_text=True)
    stranger = make_user("admin", org=make_org("Organisation B"))
    assert admin_client.get(f"/journal/utilisateurs/{stranger.id}").status_code == 404


def test_long_journals_are_verified_incrementally_on_the_page(app_factory, login_as, admin, org):
    from portal.audit.verification import verify_chain

    add_entries(org, admin, 5)
    assert verify_chain(org.id).ok
    add_entries(org, admin, 2)
    small_limit = app_factory(COFFRE_JOURNAL_FULL_VERIFY_MAX=3)
    with small_limit.app_context():
        client = small_limit.test_client()
        from portal.auth.sessions import open_session_for

        with client.session_transaction() as session:
            open_session_for(db.session.merge(admin), session)
        db.session.commit()
        html = client.get("/journal/verification", headers=HX).get_data(as_text=True)
    assert "badge-ok" in html and "point de contrôle signé n° 5" in html


def test_every_action_renders_a_sentence(app, admin, org):
    from portal.audit.actions import ACTIONS
    from portal.audit.rendering import SENTENCES, sentence

    assert set(SENTENCES) <= ACTIONS, "a sentence for an action code that does not exist"
    with app.test_request_context():
        for action in sorted(ACTIONS):
            entry = AuditEntry(action=action, user_id=admin.id, target_id=7, target_label="Plan <b>.pdf")
            text = str(sentence(entry, {admin.id: "Aminata"}))
            assert "<b>" not in text and "ID=" not in text and ("Aminata" in text or "Plan" in text), action


@pytest.mark.parametrize(
    "path",
    [
        "/journal?utilisateur=%C2%B2",
        "/journal?avant=%C2%B2",
        "/journal/moi?avant=%C2%B2",
        "/journal/export.csv?utilisateur=%C2%B2",
    ],
)
def test_non_ascii_digits_in_filters_are_no_500(admin_client, path):
    assert admin_client.get(path).status_code in (200, 422)


def test_verification_and_exports_are_rate_limited(app_factory, admin):
    app = app_factory(RATELIMIT_ENABLED=True)
    client = app.test_client()
    from portal.auth.sessions import open_session_for

    with client.session_transaction() as session:
        open_session_for(admin, session)
    statuses = [client.get("/journal/verification").status_code for _ in range(7)]
    assert statuses[:6] == [200] * 6 and statuses[6] == 429
    exports = [client.get("/journal/export.json").status_code for _ in range(11)]
    assert exports[-1] == 429


def test_every_action_code_has_a_filter_label_and_a_sentence():
    from portal.audit.actions import ACTIONS
    from portal.audit.rendering import ACTION_LABELS, SENTENCES

    assert sorted(ACTIONS - ACTION_LABELS.keys()) == []
    assert sorted(ACTIONS - SENTENCES.keys()) == []


_FORGED_LABEL = "x\r\n[audit] admin deleted all\x1b[31m"
_RAW_CONTROLS = ("\x1b", "\x9b", "\u202e", "\u2028", "\x85")


def _forged_entry(org, admin) -> AuditEntry:
    """Entries hold what was submitted (evidence); here a label, agent, name and detail forged for a terminal."""
    db.session.execute(
        sa.text("UPDATE utilisateurs SET name = :name WHERE id = :id"),
        {"name": "Aminata\u202e nimda\x85", "id": admin.id},
    )
    entry = record(
        "file.added",
        Actor(org.id, admin.id, ip="127.0.0.1", user_agent="curl\x9b2J\u2028"),
        target_type="file",
        target_id=1,
        target_label=_FORGED_LABEL,
        details={"comment": "@SUM(1)\x1b]8;;http://evil\x07"},
    )
    db.session.commit()
    return entry


def test_csv_export_neutralises_control_characters(admin_client, admin, org):
    _forged_entry(org, admin)
    body = admin_client.get("/journal/export.csv?action=file.added").get_data(as_text=True).lstrip("\ufeff")
    for raw in _RAW_CONTROLS:
        assert raw not in body, repr(raw)
    # One record, one physical line: no forged line for a log reader or `grep`.
    lines = body.split("\r\n")
    assert len(lines) == 3 and lines[-1] == "", lines
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["target_label"] == "x\\r\\n[audit] admin deleted all\\x1b[31m"
    assert row["user_agent"] == "curl\\u009b2J\\u2028"
    assert row["user_name"] == "Aminata\\u202e nimda\\u0085"
    assert "\\u001b]8;;http://evil\\u0007" in row["details"]


def test_json_export_escapes_control_characters_and_round_trips(admin_client, admin, org):
    _forged_entry(org, admin)
    body = admin_client.get("/journal/export.json?action=file.added").get_data(as_text=True)
    for raw in _RAW_CONTROLS:
        assert raw not in body, repr(raw)
    (record_,) = json.loads(body)
    # JSON escapes keep the exact evidence for whoever parses the export.
    assert record_["target_label"] == _FORGED_LABEL
    assert record_["user_agent"] == "curl\x9b2J\u2028"
    assert record_["user_name"] == "Aminata\u202e nimda\x85"
