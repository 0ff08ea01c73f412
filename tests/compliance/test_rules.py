"""Retention rules: inheritance, both modes, extension vs shortening, the rule in force."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.compliance.models import RetentionRule
from portal.extensions import db


def _rule(client, token, target_type, target_id, days, mode="gouvernance", start="upload"):
    return client.post(
        "/api/v1/conservation",
        json={"target_type": target_type, "target_id": target_id, "duration_days": days, "mode": mode, "from": start},
        headers=token,
    )


def test_rule_on_an_armoire_is_inherited_and_a_child_may_only_lengthen(client, admin_token, tree):
    armoire, folder, file = tree
    created = _rule(client, admin_token, "armoire", armoire.id, 3650, "conformite")
    assert created.status_code == 201, created.get_json()
    rule_id = created.get_json()["id"]
    in_force = client.get(f"/api/v1/conservation?target_type=file&target_id={file.id}", headers=admin_token).get_json()
    assert in_force["rule"] == {"id": rule_id, "mode": "conformite", "duration_days": 3650, "from": "upload"}
    assert in_force["inherited_from"] == {"target_type": "armoire", "target_id": armoire.id}
    db.session.expire_all()
    expected = file.created_at + timedelta(days=3650)
    assert in_force["expires_at"] == expected.isoformat()
    # A folder below may not shorten it, nor weaken it to gouvernance.
    assert _rule(client, admin_token, "folder", folder.id, 30, "conformite").status_code == 409
    assert _rule(client, admin_token, "folder", folder.id, 4000, "gouvernance").status_code == 409
    longer = _rule(client, admin_token, "folder", folder.id, 4000, "conformite")
    assert longer.status_code == 201
    own = client.get(f"/api/v1/conservation?target_type=folder&target_id={folder.id}", headers=admin_token).get_json()
    assert own["inherited_from"] is None and own["rule"]["duration_days"] == 4000
    nothing = client.get(f"/api/v1/conservation?target_type=armoire&target_id={armoire.id + 999}", headers=admin_token)
    assert nothing.status_code == 404


def test_conformite_extends_but_never_shortens_switches_or_goes(client, admin_token, tree):
    _armoire, _folder, file = tree
    rule_id = _rule(client, admin_token, "file", file.id, 365, "conformite").get_json()["id"]
    assert (
        client.patch(f"/api/v1/conservation/{rule_id}", json={"duration_days": 400}, headers=admin_token).status_code
        == 200
    )
    for body in (
        {"duration_days": 10},
        {"duration_days": 10, "reason": "erreur"},
        {"mode": "gouvernance", "reason": "x"},
    ):
        response = client.patch(f"/api/v1/conservation/{rule_id}", json=body, headers=admin_token)
        assert response.status_code == 409, body
        assert response.mimetype == "application/problem+json"
    assert client.delete(f"/api/v1/conservation/{rule_id}?motif=fin", headers=admin_token).status_code == 409
    db.session.expire_all()
    rule = db.session.get(RetentionRule, rule_id)
    assert (rule.duration_days, rule.mode) == (400, "conformite")


def test_gouvernance_shortens_only_with_the_bypass_and_a_reason(client, admin, admin_token, tree):
    _armoire, _folder, file = tree
    rule_id = _rule(client, admin_token, "file", file.id, 365).get_json()["id"]
    assert (
        client.patch(f"/api/v1/conservation/{rule_id}", json={"duration_days": 30}, headers=admin_token).status_code
        == 409
    )
    # Admins do not hold the bypass by role: it is granted per member.
    refused = client.patch(
        f"/api/v1/conservation/{rule_id}", json={"duration_days": 30, "reason": "x"}, headers=admin_token
    )
    assert refused.status_code == 403
    granted = client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": True}, headers=admin_token)
    assert granted.status_code == 200 and granted.get_json()["granted"] is True
    no_reason = client.patch(
        f"/api/v1/conservation/{rule_id}", json={"duration_days": 30, "reason": " "}, headers=admin_token
    )
    assert no_reason.status_code in (409, 422)
    ok = client.patch(
        f"/api/v1/conservation/{rule_id}", json={"duration_days": 30, "reason": "erreur de saisie"}, headers=admin_token
    )
    assert ok.status_code == 200 and ok.get_json()["duration_days"] == 30
    entry = (
        db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "retention.changed").order_by(AuditEntry.id.desc())
        )
        .scalars()
        .first()
    )
    assert entry.details["bypass_reason"] == "erreur de saisie"
    assert client.delete(f"/api/v1/conservation/{rule_id}?motif=plus%20utile", headers=admin_token).status_code == 204
    assert db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.retention_bypass_changed")).first()


def test_event_date_starts_the_count_and_cannot_move_back_while_running(client, admin_token, tree):
    _armoire, _folder, file = tree
    _rule(client, admin_token, "file", file.id, 10, "conformite", "event")
    before = client.get(f"/api/v1/conservation?target_type=file&target_id={file.id}", headers=admin_token).get_json()
    assert before["expires_at"] is None  # kept until the event is known
    assert (
        client.put(
            f"/api/v1/fichiers/{file.id}/evenement", json={"date": "2030-01-15"}, headers=admin_token
        ).status_code
        == 200
    )
    after = client.get(f"/api/v1/conservation?target_type=file&target_id={file.id}", headers=admin_token).get_json()
    assert after["expires_at"].startswith("2030-01-25")
    assert (
        client.put(
            f"/api/v1/fichiers/{file.id}/evenement", json={"date": "2020-01-01"}, headers=admin_token
        ).status_code
        == 409
    )
    assert (
        client.put(
            f"/api/v1/fichiers/{file.id}/evenement", json={"date": "15/01/2030"}, headers=admin_token
        ).status_code
        == 422
    )


def test_bad_rule_input_is_422_and_another_organisation_is_404(
    client, admin_token, tree, make_org, make_user, make_token
):
    from tests.api.conftest import bearer

    armoire, _folder, file = tree
    for body in (
        {"target_type": "armoire", "target_id": armoire.id, "duration_days": 0, "mode": "conformite", "from": "upload"},
        {"target_type": "armoire", "target_id": armoire.id, "duration_days": 5, "mode": "strict", "from": "upload"},
        {"target_type": "disque", "target_id": armoire.id, "duration_days": 5, "mode": "conformite", "from": "upload"},
        {"target_type": "armoire", "target_id": armoire.id, "duration_days": 5, "mode": "conformite", "from": "hier"},
    ):
        assert client.post("/api/v1/conservation", json=body, headers=admin_token).status_code == 422, body
    other = make_user("admin", org=make_org("Autre"))
    other_token = bearer(make_token(other))
    assert _rule(client, other_token, "file", file.id, 5).status_code == 404
    assert not db.session.execute(select(RetentionRule)).first()
