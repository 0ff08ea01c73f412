"""Disposition: the queue, keep longer, destroy with a signed certificate verified offline."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.crypto.models import DataKey
from portal.database import utcnow
from portal.documents.models import File, FileVersion
from portal.extensions import db


def _expire(file_id: int, days: int = 400) -> None:
    db.session.execute(
        File.__table__.update().where(File.id == file_id).values(created_at=utcnow() - timedelta(days=days))
    )
    db.session.commit()


def _rule(client, token, target_type, target_id, days=365, mode="conformite"):
    response = client.post(
        "/api/v1/conservation",
        json={
            "target_type": target_type,
            "target_id": target_id,
            "duration_days": days,
            "mode": mode,
            "from": "upload",
        },
        headers=token,
    )
    assert response.status_code == 201
    return response.get_json()["id"]


def test_destroy_shreds_every_version_and_issues_a_certificate_that_verifies(
    app, client, admin, admin_token, tree, tmp_path
):
    from portal.audit.context import Actor
    from portal.documents.services import uploads

    armoire, _folder, file = tree
    uploads.add_version(Actor(admin.organization_id, admin.id), db.session.get(File, file.id), None, iter([b"v2"]), 2)
    db.session.commit()
    rule_id = _rule(client, admin_token, "armoire", armoire.id)
    assert client.get("/api/v1/disposition", headers=admin_token).get_json()["items"] == []
    early = client.post(f"/api/v1/disposition/{file.id}", json={"decision": "destroy"}, headers=admin_token)
    assert early.status_code == 423 and early.get_json()["type"] == "/problems/retention"
    _expire(file.id)
    items = client.get("/api/v1/disposition", headers=admin_token).get_json()["items"]
    assert [(i["file_id"], i["rule_id"], i["mode"]) for i in items] == [(file.id, rule_id, "conformite")]
    versions = list(db.session.execute(select(FileVersion).where(FileVersion.file_id == file.id)).scalars())
    digests = sorted(v.sha256 for v in versions)
    destroyed = client.post(f"/api/v1/disposition/{file.id}", json={"decision": "destroy"}, headers=admin_token)
    assert destroyed.status_code == 201, destroyed.get_json()
    certificate_id = destroyed.get_json()["certificate_id"]
    db.session.expire_all()
    assert db.session.get(File, file.id).purged_at is not None
    for version in versions:
        version = db.session.get(FileVersion, version.id)
        assert version.storage_key is None
        assert db.session.get(DataKey, version.data_key_id).wrapped_key is None  # crypto-shredded
    assert client.get("/api/v1/disposition", headers=admin_token).get_json()["items"] == []
    signed = client.get(f"/api/v1/certificats/{certificate_id}", headers=admin_token)
    assert signed.status_code == 200
    document = json.loads(signed.get_data())
    body = document["body"]
    assert body["certificate_id"] == certificate_id and body["approved_by"]["id"] == admin.id
    (entry,) = body["files"]
    assert entry["id"] == file.id and entry["name"] == "bilan.pdf" and entry["rule"]["id"] == rule_id
    assert sorted(v["sha256"] for v in entry["versions"]) == digests
    pdf = client.get(f"/api/v1/certificats/{certificate_id}.pdf", headers=admin_token)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert db.session.execute(select(AuditEntry).where(AuditEntry.action == "disposition.destroyed")).scalar_one()

    good = tmp_path / "certificat.json"
    good.write_bytes(signed.get_data())
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["compliance", "verify-certificate", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    for tamper in (
        lambda d: d["body"]["files"][0].__setitem__("name", "autre.pdf"),
        lambda d: d["body"].__setitem__("approved_by", None),
        lambda d: d.__setitem__("signature", d["signature"][:-4] + "AAA="),
    ):
        altered = json.loads(signed.get_data())
        tamper(altered)
        bad = tmp_path / "falsifie.json"
        bad.write_text(json.dumps(altered))
        result = runner.invoke(args=["compliance", "verify-certificate", str(bad)])
        assert result.exit_code != 0 and "INVALID" in result.output
    garbage = tmp_path / "rien.json"
    garbage.write_text("pas du json")
    assert runner.invoke(args=["compliance", "verify-certificate", str(garbage)]).exit_code != 0


def test_keep_longer_takes_the_file_out_of_the_queue_and_protects_it(client, admin_token, tree):
    _armoire, folder, file = tree
    _rule(client, admin_token, "folder", folder.id, mode="gouvernance")
    _expire(file.id)
    assert (
        client.post(f"/api/v1/disposition/{file.id}", json={"decision": "keep"}, headers=admin_token).status_code == 422
    )
    kept = client.post(
        f"/api/v1/disposition/{file.id}", json={"decision": "keep", "extend_days": 30}, headers=admin_token
    )
    assert kept.status_code == 201
    assert client.get("/api/v1/disposition", headers=admin_token).get_json()["items"] == []
    refused = client.delete(f"/api/v1/fichiers/{file.id}", headers=admin_token)
    assert refused.status_code == 423 and refused.get_json()["type"] == "/problems/retention"


def test_a_held_file_never_enters_the_queue(client, admin_token, tree):
    _armoire, _folder, file = tree
    _rule(client, admin_token, "file", file.id)
    _expire(file.id)
    client.post(
        "/api/v1/verrouillages",
        json={"target_type": "file", "target_id": file.id, "reason": "litige", "reference": "L-1"},
        headers=admin_token,
    )
    assert client.get("/api/v1/disposition", headers=admin_token).get_json()["items"] == []
    refused = client.post(f"/api/v1/disposition/{file.id}", json={"decision": "destroy"}, headers=admin_token)
    assert refused.status_code == 423 and refused.get_json()["type"] == "/problems/legal-hold"


def test_a_file_without_any_rule_is_not_disposable(client, admin_token, tree):
    _armoire, _folder, file = tree
    response = client.post(f"/api/v1/disposition/{file.id}", json={"decision": "destroy"}, headers=admin_token)
    assert response.status_code == 409
    assert db.session.get(File, file.id).purged_at is None


def test_compliance_page_and_its_exports(admin_client, client, admin_token, tree):
    armoire, _folder, file = tree
    _rule(client, admin_token, "armoire", armoire.id, days=30, mode="gouvernance")
    client.post(
        "/api/v1/verrouillages",
        json={"target_type": "file", "target_id": file.id, "reason": "=HYPERLINK(1)", "reference": "REF-9"},
        headers=admin_token,
    )
    page = admin_client.get("/conformite/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "REF-9" in html and "Comptabilité" in html and "bilan.pdf" in html  # upcoming expiry
    csv_text = admin_client.get("/conformite/rapport.csv").get_data(as_text=True)
    assert "rule," in csv_text and "REF-9" in csv_text and "'=HYPERLINK(1)" in csv_text
    pdf = admin_client.get("/conformite/rapport.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    file_page = admin_client.get(f"/fichiers/{file.id}").get_data(as_text=True)
    assert "REF-9" in file_page and "Lever le verrouillage" in file_page


def test_web_forms_place_and_lift_a_hold_and_set_a_rule(admin_client, tree):
    from portal.compliance.models import LegalHold, RetentionRule
    from tests.conftest import csrf

    armoire, _folder, file = tree
    token = csrf(admin_client, f"/armoires/{armoire.id}")
    placed = admin_client.post(
        "/conformite/verrouillages",
        data={
            "csrf_token": token,
            "target_type": "armoire",
            "target_id": armoire.id,
            "reason": "audit",
            "reference": "A-1",
        },
    )
    assert placed.status_code == 303
    hold = db.session.execute(select(LegalHold)).scalar_one()
    missing = admin_client.post(f"/conformite/verrouillages/{hold.id}/lever", data={"csrf_token": token})
    assert missing.status_code == 422
    lifted = admin_client.post(
        f"/conformite/verrouillages/{hold.id}/lever", data={"csrf_token": token, "reason": "fini"}
    )
    assert lifted.status_code == 303
    rule = admin_client.post(
        "/conformite/regles",
        data={
            "csrf_token": token,
            "target_type": "file",
            "target_id": file.id,
            "duration_days": 10,
            "mode": "conformite",
            "counted_from": "upload",
        },
    )
    assert rule.status_code == 303
    shorter = admin_client.post(
        "/conformite/regles",
        data={
            "csrf_token": token,
            "target_type": "file",
            "target_id": file.id,
            "duration_days": 5,
            "mode": "conformite",
            "counted_from": "upload",
        },
    )
    assert shorter.status_code == 409
    db.session.expire_all()
    assert db.session.execute(select(RetentionRule)).scalar_one().duration_days == 10
