"""Every deleting path asks the one policy: holds and retention refuse with 423, change nothing, are journalled."""

from __future__ import annotations

import ast
import inspect
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy import update as sa_update

from portal.audit.models import AuditEntry
from portal.documents.models import File, FileVersion
from portal.extensions import db
from tests.conftest import csrf

ROOT = Path(__file__).resolve().parents[2]


def _hold(client, token, target_type, target_id, reference="RG 24/00123"):
    response = client.post(
        "/api/v1/verrouillages",
        json={
            "target_type": target_type,
            "target_id": target_id,
            "reason": "contentieux fournisseur",
            "reference": reference,
        },
        headers=token,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _refusals():
    return list(
        db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "file.deletion_refused").order_by(AuditEntry.id)
        ).scalars()
    )


def _trash(file_id):
    file = db.session.get(File, file_id)
    file.deleted_at = file.created_at
    db.session.commit()


# ---------------------------------------------------------------- the registry is complete


def _deleting_functions() -> set[tuple[str, str]]:
    """Functions of portal/ that delete a file or a copy of one: they shred data keys, set
    ``deleted_at``/``purged_at`` on something, delete a backup manifest or a File/Folder/Armoire row."""
    found: set[tuple[str, str]] = set()
    for path in (ROOT / "portal").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module.startswith(("portal.compliance.", "portal.crypto.")) or "bench" in module:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for inner in ast.walk(node):
                deleting = False
                if isinstance(inner, ast.Call):
                    name = getattr(inner.func, "attr", getattr(inner.func, "id", ""))
                    deleting = name in {"shred_data_keys", "shred_data_key", "delete_manifest"}
                    if name == "delete" and inner.args and isinstance(inner.args[0], ast.Name):
                        deleting = inner.args[0].id in {"file", "folder", "armoire", "backup"}
                if isinstance(inner, ast.Assign):
                    for target in inner.targets:
                        if isinstance(target, ast.Attribute) and target.attr in {"deleted_at", "purged_at"}:
                            value = inner.value
                            deleting = deleting or not (isinstance(value, ast.Constant) and value.value is None)
                if deleting:
                    found.add((module, node.name))
    return found


def test_every_deleting_function_is_registered_and_asks_the_policy():
    from portal.compliance.policy import DELETING_PATHS

    found = _deleting_functions()
    # The scan sees the primitives' callers; the scheduled purge and disposition reach them through purge_file.
    assert {("portal.documents.services.trash", "purge_file"), ("portal.backups.retention", "prune")} <= found
    missing = found - set(DELETING_PATHS)
    assert not missing, f"deleting code paths that do not go through the compliance policy: {sorted(missing)}"
    import importlib

    for module, name in DELETING_PATHS:
        source = inspect.getsource(getattr(importlib.import_module(module), name))
        asks = (
            "assert_may_delete" in source
            or "assert_container_deletable" in source
            or "assert_backup_prunable" in source
            or "purge_file(" in source
            or "_require_expired" in source
        )
        assert asks, f"{module}.{name} does not ask the policy"


# ---------------------------------------------------------------- each path, with a hold


def test_api_delete_of_a_held_file_is_423_named_and_journalled(client, admin_token, tree):
    _armoire, _folder, file = tree
    hold_id = _hold(client, admin_token, "file", file.id)
    response = client.delete(f"/api/v1/fichiers/{file.id}", headers=admin_token)
    assert response.status_code == 423
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "/problems/legal-hold"
    assert problem["hold_id"] == hold_id and problem["reference"] == "RG 24/00123"
    assert "RG 24/00123" in problem["detail"]
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is None
    (entry,) = _refusals()
    assert entry.target_id == file.id and entry.details["hold_id"] == hold_id and entry.details["action"] == "trash"
    assert "RG 24/00123" in entry.details["reason"]
    # Lifting it (journalled, with a reason) lets the deletion through.
    assert client.delete(f"/api/v1/verrouillages/{hold_id}", headers=admin_token).status_code == 422
    assert (
        client.delete(f"/api/v1/verrouillages/{hold_id}?motif=affaire%20close", headers=admin_token).status_code == 200
    )
    assert client.get("/api/v1/verrouillages", headers=admin_token).get_json()["items"] == []
    assert client.delete(f"/api/v1/fichiers/{file.id}", headers=admin_token).status_code == 204
    assert db.session.execute(select(AuditEntry).where(AuditEntry.action == "legal_hold.released")).first()


def test_a_hold_on_the_armoire_covers_a_file_in_the_trash_against_web_purge(admin_client, client, admin_token, tree):
    armoire, _folder, file = tree
    _trash(file.id)
    _hold(client, admin_token, "armoire", armoire.id, "PV-7")
    token = csrf(admin_client, "/corbeille")
    response = admin_client.post(
        f"/corbeille/{file.id}/detruire", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 423
    assert "PV-7" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(File, file.id).purged_at is None
    assert all(v.storage_key for v in db.session.execute(select(FileVersion)).scalars())
    assert _refusals()[-1].details["action"] == "purge"


def test_web_delete_of_a_held_file_shows_the_423_message(admin_client, client, admin_token, tree):
    _armoire, folder, file = tree
    _hold(client, admin_token, "folder", folder.id, "Dossier 42")
    token = csrf(admin_client, f"/fichiers/{file.id}")
    response = admin_client.post(f"/fichiers/{file.id}/supprimer", data={"csrf_token": token})
    assert response.status_code == 423
    assert "Dossier 42" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is None


def test_scheduled_trash_purge_skips_held_and_retained_files_and_journals(
    app, client, admin, admin_token, tree, store_file
):
    from portal.database import utcnow
    from portal.documents.services import trash

    armoire, _folder, held = tree
    retained = store_file(admin, armoire, "contrat.pdf", b"contrat\n")
    free = store_file(admin, armoire, "brouillon.txt", b"brouillon\n")
    _hold(client, admin_token, "file", held.id)
    rule = client.post(
        "/api/v1/conservation",
        json={
            "target_type": "file",
            "target_id": retained.id,
            "duration_days": 3650,
            "mode": "gouvernance",
            "from": "upload",
        },
        headers=admin_token,
    )
    assert rule.status_code == 201
    for file in (held, retained, free):
        _trash(file.id)
    keys = trash.purge_expired_trash(utcnow() + timedelta(days=400), 30)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(File, held.id).purged_at is None
    assert db.session.get(File, retained.id).purged_at is None
    assert db.session.get(File, free.id).purged_at is not None and len(keys) == 1
    actions = {(e.target_id, e.details["type"], e.details["action"]) for e in _refusals()}
    assert actions == {
        (held.id, "/problems/legal-hold", "retention_purge"),
        (retained.id, "/problems/retention", "retention_purge"),
    }
    assert all(e.user_id is None for e in _refusals())  # the system actor


def test_backup_pruning_keeps_a_backup_holding_a_held_or_retained_file(app, client, admin, admin_token, tree):
    from portal.audit.context import Actor
    from portal.backups import retention, services
    from portal.backups.models import Backup, BackupSettings
    from portal.database import utcnow

    _armoire, _folder, file = tree
    actor = Actor(admin.organization_id, admin.id)
    db.session.add(BackupSettings(organization_id=admin.organization_id, keep_daily=0, keep_weekly=0, keep_monthly=0))
    old = services.backup_now(actor, "manuel")
    db.session.get(Backup, old.id).created_at = utcnow() - timedelta(days=30)
    db.session.commit()
    hold_id = _hold(client, admin_token, "file", file.id)
    assert retention.prune(admin.organization_id) == []
    db.session.commit()
    assert db.session.get(Backup, old.id) is not None
    (entry,) = _refusals()
    assert entry.details["action"] == "backup_prune" and entry.details["backup_id"] == old.id
    # Retention keeps it too once the hold is lifted.
    client.delete(f"/api/v1/verrouillages/{hold_id}?motif=fin", headers=admin_token)
    client.post(
        "/api/v1/conservation",
        json={
            "target_type": "file",
            "target_id": file.id,
            "duration_days": 100,
            "mode": "conformite",
            "from": "upload",
        },
        headers=admin_token,
    )
    assert retention.prune(admin.organization_id) == []
    db.session.commit()
    assert _refusals()[-1].details["type"] == "/problems/retention"
    # Without protection the old backup goes.
    db.session.execute(
        File.__table__.update().where(File.id == file.id).values(created_at=utcnow() - timedelta(days=200))
    )
    db.session.commit()
    assert retention.prune(admin.organization_id) == [old.id]


def test_folder_and_armoire_carrying_a_hold_or_rule_are_not_deleted(app, client, admin, admin_token, make_armoire):
    from portal.audit.context import Actor
    from portal.compliance.errors import DeletionRefused
    from portal.documents.models import Folder
    from portal.documents.services import armoires, folders

    actor = Actor(admin.organization_id, admin.id)
    armoire = make_armoire(admin.organization, "Vide")
    folder = folders.create_folder(actor, armoire, None, "Vide aussi")
    db.session.commit()
    _hold(client, admin_token, "folder", folder.id)
    with pytest.raises(DeletionRefused):
        folders.delete_folder(actor, db.session.get(Folder, folder.id))
    db.session.rollback()
    client.post(
        "/api/v1/conservation",
        json={
            "target_type": "armoire",
            "target_id": armoire.id,
            "duration_days": 5,
            "mode": "gouvernance",
            "from": "upload",
        },
        headers=admin_token,
    )
    db.session.delete(db.session.get(Folder, folder.id))
    db.session.commit()
    with pytest.raises(DeletionRefused):
        armoires.delete_armoire(actor, armoire)


# ---------------------------------------------------------------- modes and bypass


def _rule(client, token, file_id, mode):
    response = client.post(
        "/api/v1/conservation",
        json={"target_type": "file", "target_id": file_id, "duration_days": 3650, "mode": mode, "from": "upload"},
        headers=token,
    )
    assert response.status_code == 201
    return response.get_json()["id"]


def test_conformite_refuses_everyone_even_a_bypass_holder_and_platform_admin(client, admin, admin_token, tree):
    _armoire, _folder, file = tree
    rule_id = _rule(client, admin_token, file.id, "conformite")
    client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": True}, headers=admin_token)
    admin.is_platform_admin = True
    db.session.commit()
    response = client.delete(f"/api/v1/fichiers/{file.id}?contourner=1&motif=audit", headers=admin_token)
    assert response.status_code == 423
    problem = response.get_json()
    assert problem["type"] == "/problems/retention" and problem["rule_id"] == rule_id
    assert problem["expires_at"].startswith(str(file.created_at.year + 10)[:3])
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is None


def test_gouvernance_yields_to_a_granted_member_with_a_reason(client, admin, admin_token, tree):
    _armoire, _folder, file = tree
    rule_id = _rule(client, admin_token, file.id, "gouvernance")
    plain = client.delete(f"/api/v1/fichiers/{file.id}", headers=admin_token)
    assert plain.status_code == 423 and plain.get_json()["rule_id"] == rule_id
    assert client.delete(f"/api/v1/fichiers/{file.id}?contourner=1", headers=admin_token).status_code == 422
    not_granted = client.delete(f"/api/v1/fichiers/{file.id}?contourner=1&motif=doublon", headers=admin_token)
    assert not_granted.status_code == 403
    _assert_forbidden_bypass_journalled(f"/api/v1/fichiers/{file.id}")
    client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": True}, headers=admin_token)
    done = client.delete(f"/api/v1/fichiers/{file.id}?contourner=1&motif=doublon", headers=admin_token)
    assert done.status_code == 204
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "retention.bypassed")).scalar_one()
    assert entry.details["reason"] == "doublon" and entry.details["rule_ids"] == [rule_id]
    client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": False}, headers=admin_token)
    assert (
        client.put(
            f"/api/v1/membres/{admin.id}/contournement", json={"granted": "peut-être"}, headers=admin_token
        ).status_code
        == 422
    )


def test_non_admins_cannot_manage_retention(client, contributor, make_token, tree):
    from tests.api.conftest import bearer

    token = bearer(make_token(contributor))
    _armoire, _folder, file = tree
    response = client.post(
        "/api/v1/verrouillages",
        json={"target_type": "file", "target_id": file.id, "reason": "x", "reference": "y"},
        headers=token,
    )
    assert response.status_code == 403


def test_a_move_cannot_take_a_file_or_folder_out_from_under_a_hold_or_rule(
    client, admin_client, admin, admin_token, tree, make_armoire
):
    from portal.audit.context import Actor
    from portal.compliance.errors import DeletionRefused
    from portal.documents.models import Folder
    from portal.documents.services import files, folders

    armoire, folder, file = tree
    actor = Actor(admin.organization_id, admin.id)
    elsewhere = make_armoire(admin.organization, "Ailleurs")
    _hold(client, admin_token, "folder", folder.id, "M-1")
    token = csrf(admin_client, f"/fichiers/{file.id}")
    moved = admin_client.post(
        f"/fichiers/{file.id}/deplacer", data={"csrf_token": token, "destination": f"{elsewhere.id}:"}
    )
    assert moved.status_code == 423 and "M-1" not in moved.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(File, file.id).folder_id == folder.id
    assert _refusals()[-1].details["action"] == "move"
    # A sub-folder of the held folder cannot leave it either; moving within the cover is fine.
    inner = folders.create_folder(actor, armoire, db.session.get(Folder, folder.id), "Interne")
    db.session.commit()
    with pytest.raises(DeletionRefused):
        folders.move_folder(actor, inner, None)
    db.session.rollback()
    files.move_file(actor, db.session.get(File, file.id), armoire, db.session.get(Folder, inner.id))
    db.session.commit()


def test_concurrent_rule_creation_gives_one_rule_and_one_409(app, admin, make_token, tree):
    import threading

    from portal.compliance.models import RetentionRule
    from tests.api.conftest import bearer

    armoire, _folder, _file = tree
    armoire_id = armoire.id  # read here: the threads have no app context to load it
    headers = bearer(make_token(admin))
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def create() -> None:
        barrier.wait()
        with app.test_client() as own:
            response = own.post(
                "/api/v1/conservation",
                json={
                    "target_type": "armoire",
                    "target_id": armoire_id,
                    "duration_days": 30,
                    "mode": "gouvernance",
                    "from": "upload",
                },
                headers=headers,
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201, 409]
    db.session.rollback()
    assert len(list(db.session.execute(select(RetentionRule)).scalars())) == 1


# ---------------------------------------------------------------- the web bypass form


def _bypass_form(html: str) -> str | None:
    import re

    match = re.search(r'<form method="post" action="([^"]+)" id="bypass-form">', html)
    return match.group(1) if match else None


def _stale_proof() -> None:
    from portal.auth.models import UserSession
    from portal.database import utcnow

    db.session.execute(sa_update(UserSession).values(reauth_at=utcnow() - timedelta(hours=2)))
    db.session.commit()


def test_the_web_423_offers_the_bypass_form_only_to_a_granted_member(
    admin_client, client, admin, admin_token, tree, login_as, contributor
):
    _armoire, _folder, file = tree
    _rule(client, admin_token, file.id, "gouvernance")
    token = csrf(admin_client, f"/fichiers/{file.id}")
    refused = admin_client.post(f"/fichiers/{file.id}/supprimer", data={"csrf_token": token})
    assert refused.status_code == 423
    assert _bypass_form(refused.get_data(as_text=True)) is None  # not granted: the page only explains

    client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": True}, headers=admin_token)
    refused = admin_client.post(f"/fichiers/{file.id}/supprimer", data={"csrf_token": token})
    assert refused.status_code == 423
    action = _bypass_form(refused.get_data(as_text=True))
    assert action == f"/fichiers/{file.id}/supprimer/contourner"

    # The reason is required; nothing changes without it.
    assert admin_client.post(action, data={"csrf_token": token, "motif": "  "}).status_code == 422
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is None

    # An old proof: the re-authentication form first, carrying the reason; then the trash.
    _stale_proof()
    asked = admin_client.post(action, data={"csrf_token": token, "motif": "doublon du scan"})
    assert asked.status_code == 401 and "doublon du scan" in asked.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is None
    from tests.conftest import TEST_PASSWORD

    done = admin_client.post(
        action, data={"csrf_token": token, "motif": "doublon du scan", "reauth_password": TEST_PASSWORD}
    )
    assert done.status_code == 303
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is not None
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "retention.bypassed")).scalar_one()
    assert entry.details["reason"] == "doublon du scan" and entry.details["action"] == "trash"


def test_the_web_bypass_is_refused_for_holds_conformite_and_members_without_the_grant(
    admin_client, client, admin, admin_token, tree, make_armoire, store_file
):
    armoire, _folder, file = tree
    client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": True}, headers=admin_token)
    strict = store_file(admin, armoire, "registre.pdf", b"registre\n")
    _rule(client, admin_token, strict.id, "conformite")
    token = csrf(admin_client, f"/fichiers/{strict.id}")
    refused = admin_client.post(f"/fichiers/{strict.id}/supprimer", data={"csrf_token": token})
    assert refused.status_code == 423 and _bypass_form(refused.get_data(as_text=True)) is None
    forced = admin_client.post(f"/fichiers/{strict.id}/supprimer/contourner", data={"csrf_token": token, "motif": "x"})
    assert forced.status_code == 423 and _bypass_form(forced.get_data(as_text=True)) is None
    _hold(client, admin_token, "file", file.id, "PV-9")
    held = admin_client.post(f"/fichiers/{file.id}/supprimer/contourner", data={"csrf_token": token, "motif": "x"})
    assert held.status_code == 423 and "PV-9" in held.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(File, strict.id).deleted_at is None and db.session.get(File, file.id).deleted_at is None


def test_a_contributor_cannot_force_a_gouvernance_trash(client, admin_token, tree, login_as, contributor):
    _armoire, _folder, file = tree
    _rule(client, admin_token, file.id, "gouvernance")
    contributor_client = login_as(contributor)
    token = csrf(contributor_client, f"/fichiers/{file.id}")
    forced = contributor_client.post(
        f"/fichiers/{file.id}/supprimer/contourner", data={"csrf_token": token, "motif": "x"}
    )
    assert forced.status_code == 403
    _assert_forbidden_bypass_journalled(f"/fichiers/{file.id}/supprimer/contourner")
    db.session.expire_all()
    assert db.session.get(File, file.id).deleted_at is None


def _assert_forbidden_bypass_journalled(path: str) -> None:
    """A bypass without the grant is a forbidden action: journalled like the decorator's 403s."""
    entries = db.session.execute(select(AuditEntry).where(AuditEntry.action == "security.forbidden")).scalars().all()
    assert [(e.details["permission"], e.details["path"]) for e in entries] == [("retention.bypass", path)]


def test_the_web_purge_423_offers_the_bypass_and_destroys_with_a_reason(admin_client, client, admin, admin_token, tree):
    _armoire, _folder, file = tree
    token = csrf(admin_client, f"/fichiers/{file.id}")
    assert admin_client.post(f"/fichiers/{file.id}/supprimer", data={"csrf_token": token}).status_code == 303
    _rule(client, admin_token, file.id, "gouvernance")
    client.put(f"/api/v1/membres/{admin.id}/contournement", json={"granted": True}, headers=admin_token)
    refused = admin_client.post(f"/corbeille/{file.id}/detruire", data={"csrf_token": token})
    assert refused.status_code == 423
    action = _bypass_form(refused.get_data(as_text=True))
    assert action == f"/corbeille/{file.id}/detruire/contourner"
    done = admin_client.post(action, data={"csrf_token": token, "motif": "erreur de dépôt"})
    assert done.status_code == 303
    db.session.expire_all()
    assert db.session.get(File, file.id).purged_at is not None
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "retention.bypassed")).scalar_one()
    assert entry.details["action"] == "purge"
