"""A member's data export: a ZIP streamed with their files decrypted on the fly."""

from __future__ import annotations

import io
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.auth.models import UserSession
from portal.database import utcnow
from portal.documents.models import File
from portal.documents.services import armoires
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import last_file, upload

MARKER = b"CONTENU-SECRET-DE-KOFFI-"


def _setup(app, admin, contributor, contributor_client):
    armoire = armoires.create_armoire(Actor(admin.organization_id, admin.id), "Comptabilité")
    db.session.commit()
    kept = MARKER + os.urandom(300_000)
    assert upload(contributor_client, armoire.id, "facture: 2026.pdf", kept).status_code in (200, 201)
    kept_file = last_file()
    trashed = MARKER + b"dans la corbeille"
    assert upload(contributor_client, armoire.id, "brouillon.pdf", trashed).status_code in (200, 201)
    trashed_file = last_file()
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    response = contributor_client.post(f"/fichiers/{trashed_file.id}/supprimer", data={"csrf_token": token})
    assert response.status_code < 400
    db.session.expire_all()
    assert db.session.get(File, trashed_file.id).deleted_at is not None
    return armoire, kept_file, kept


def test_export_holds_the_profile_the_journal_and_the_decrypted_files(
    app, admin, admin_client, contributor, contributor_client
):
    _armoire, kept_file, kept = _setup(app, admin, contributor, contributor_client)
    response = admin_client.get(f"/users/{contributor.id}/donnees.zip")
    assert response.status_code == 200
    assert response.is_streamed and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    names = archive.namelist()
    assert names[:2] == ["member.json", "journal.jsonl"]
    member = json.loads(archive.read("member.json"))
    assert member["profile"]["email"] == contributor.email and member["profile"]["name"] == contributor.name
    assert member["memberships"] == [
        {"organization_id": contributor.organization_id, "organization": "Organisation A", "role": "contributeur"}
    ]
    assert len(member["sessions"]) == 1 and member["sessions"][0]["revoked_at"] is None
    assert [item["name"] for item in member["files"]] == ["facture: 2026.pdf"]
    path = member["files"][0]["path_in_archive"]
    assert path == f"fichiers/Comptabilité/{kept_file.id}-v1-facture_ 2026.pdf"
    assert archive.read(path) == kept  # the trashed file is not there, the kept one is byte-identical
    assert [name for name in names if name.startswith("fichiers/")] == [path]
    journal = [json.loads(line) for line in archive.read("journal.jsonl").splitlines()]
    assert {"file.added", "file.deleted"} <= {entry["action"] for entry in journal}
    assert all(entry["actor_user_id"] == contributor.id or entry["target_id"] == contributor.id for entry in journal)
    # Journalled, with how many versions went out.
    done = db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.data_exported")).scalar_one()
    assert (done.user_id, done.target_id, done.details) == (admin.id, contributor.id, {"versions": 1})
    # Nothing in clear was written anywhere under the instance (storage, temporary files).
    for file in Path(app.instance_path).rglob("*"):
        if file.is_file():
            assert MARKER not in file.read_bytes(), file


def test_export_is_for_admins_after_a_recent_proof(app, admin, admin_client, contributor, contributor_client):
    assert contributor_client.get(f"/users/{admin.id}/donnees.zip").status_code == 403
    db.session.execute(update(UserSession).values(reauth_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    assert admin_client.get(f"/users/{contributor.id}/donnees.zip").status_code == 401
    assert db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.data_exported")).first() is None


def test_another_organisations_member_cannot_be_exported(app, admin_client, make_org, make_user):
    stranger = make_user("lecteur", org=make_org("Autre"))
    assert admin_client.get(f"/users/{stranger.id}/donnees.zip").status_code == 404


def test_archive_paths_cannot_escape_the_files_folder():
    from portal.privacy.export import archive_path

    assert archive_path(3, 2, "../..", "../../etc/passwd") == "fichiers/_/3-v2-_.._etc_passwd"
    assert archive_path(4, 1, "A\\B", "x\r\ny.txt") == "fichiers/A_B/4-v1-x_y.txt"


def test_the_cli_streams_the_archive_to_standard_output(app, admin, contributor, contributor_client):
    _armoire, _kept_file, kept = _setup(app, admin, contributor, contributor_client)
    result = app.test_cli_runner().invoke(args=["privacy", "export", "--user", str(contributor.id)])
    assert result.exit_code == 0, result.output
    archive = zipfile.ZipFile(io.BytesIO(result.stdout_bytes))
    member = json.loads(archive.read("member.json"))
    assert archive.read(member["files"][0]["path_in_archive"]) == kept
    done = db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.data_exported")).scalar_one()
    assert done.user_id is None and done.details["channel"] == "cli"
