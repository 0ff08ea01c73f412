"""Renaming or moving a file onto a name taken in the target folder is a 409, from the list's
dialog (the dialog again, with the reason) or from the file page; nothing changes."""

from __future__ import annotations

import json

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.documents.models import File
from portal.documents.services import folders, uploads
from portal.extensions import db
from tests.conftest import csrf

HX = {"HX-Request": "true"}


def _files(contributor, armoire):
    actor = Actor(contributor.organization_id, contributor.id)
    archives = folders.create_folder(actor, armoire, None, "Archives")
    a = uploads.store_upload(actor, armoire, None, "a.txt", [b"a"], 1).file_id
    b = uploads.store_upload(actor, armoire, None, "b.txt", [b"b"], 1).file_id
    uploads.store_upload(actor, armoire, archives, "a.txt", [b"old"], 3)
    db.session.commit()
    return archives, db.session.get(File, a), db.session.get(File, b)


def _journal(action: str) -> int:
    return db.session.execute(
        db.select(db.func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
    ).scalar_one()


def test_rename_onto_a_taken_name_is_refused_in_the_dialog(contributor_client, contributor, armoire):
    _archives, a, b = _files(contributor, armoire)
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    dialog = contributor_client.get(f"/fichiers/{b.id}/dialogue/rename?tri=-name", headers=HX)
    assert dialog.status_code == 200 and '<dialog class="fm-dialog"' in dialog.get_data(as_text=True)

    url = f"/fichiers/{b.id}/renommer?vue=liste&tri=-name"
    response = contributor_client.post(url, data={"csrf_token": token, "name": "a.txt"}, headers=HX)
    assert response.status_code == 409
    body = response.get_data(as_text=True)
    assert "Un fichier porte déjà ce nom dans ce dossier." in body and "<dialog" in body and "Conflit" not in body
    response = contributor_client.post(url, data={"csrf_token": token, "name": " .. "}, headers=HX)
    assert response.status_code == 422 and "Le nom est obligatoire." in response.get_data(as_text=True)
    db.session.refresh(b)
    assert b.name == "b.txt" and _journal("file.renamed") == 0

    # Success: the list (sorted as it was), retargeted onto #file-list, with a toast.
    response = contributor_client.post(url, data={"csrf_token": token, "name": "c.txt"}, headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#file-list" and response.headers["HX-Reswap"] == "outerHTML"
    toast = json.loads(response.headers["HX-Trigger"])["coffre:toast"]
    assert toast == {"message": "Fichier renommé en « c.txt »."}
    assert 'id="file-list"' in response.get_data(as_text=True)
    assert 'aria-sort="descending"' in response.get_data(as_text=True)
    db.session.refresh(b)
    assert b.name == "c.txt" and _journal("file.renamed") == 1

    # Renaming a file to its own name is no conflict.
    response = contributor_client.post(f"/fichiers/{a.id}/renommer", data={"csrf_token": token, "name": "a.txt"})
    assert response.status_code == 303


def test_move_onto_a_taken_name_is_refused(contributor_client, contributor, armoire):
    archives, a, _b = _files(contributor, armoire)
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    destination = f"{armoire.id}:{archives.id}"
    response = contributor_client.post(
        f"/fichiers/{a.id}/deplacer?vue=liste", data={"csrf_token": token, "destination": destination}, headers=HX
    )
    assert response.status_code == 409 and "<dialog" in response.get_data(as_text=True)
    # Without htmx: the plain error page, still a 409.
    response = contributor_client.post(
        f"/fichiers/{a.id}/deplacer", data={"csrf_token": token, "destination": destination}
    )
    assert response.status_code == 409
    db.session.refresh(a)
    assert a.folder_id is None and _journal("file.moved") == 0
    # A bad destination is a 422 in the dialog, not a 500.
    response = contributor_client.post(
        f"/fichiers/{a.id}/deplacer?vue=liste", data={"csrf_token": token, "destination": "x:y"}, headers=HX
    )
    assert response.status_code == 422 and "Choisissez une destination." in response.get_data(as_text=True)


def test_dialog_urls_without_htmx_lead_to_the_file_page(contributor_client, reader_client, contributor, armoire):
    _archives, a, _b = _files(contributor, armoire)
    response = contributor_client.get(f"/fichiers/{a.id}/dialogue/move")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/fichiers/{a.id}#deplacer")
    assert reader_client.get(f"/fichiers/{a.id}/dialogue/rename", headers=HX).status_code == 403
    assert contributor_client.get(f"/fichiers/{a.id}/dialogue/delete", headers=HX).status_code == 404
