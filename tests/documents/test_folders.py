"""Folder management: rename, move (same armoire, no cycles), delete (empty only), journal."""

from __future__ import annotations

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.documents.models import Armoire, File, Folder
from portal.documents.services import armoires, folders, trash
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import last_file, upload


def actions_for(folder_id: int) -> list[tuple[str, dict | None]]:
    entries = db.session.execute(
        db.select(AuditEntry)
        .where(AuditEntry.target_type == "folder", AuditEntry.target_id == folder_id)
        .order_by(AuditEntry.id)
    ).scalars()
    return [(e.action, e.details) for e in entries]


def tree(contributor, armoire):
    actor = Actor(contributor.organization_id, contributor.id)
    a = folders.create_folder(actor, armoire, None, "A")
    b = folders.create_folder(actor, armoire, a, "B")
    c = folders.create_folder(actor, armoire, b, "C")
    other = folders.create_folder(actor, armoire, None, "Autre")
    db.session.commit()
    return a, b, c, other


def test_rename_folder(contributor_client, contributor, armoire):
    a, _b, _c, _other = tree(contributor, armoire)
    token = csrf(contributor_client, f"/armoires/{armoire.id}/dossiers/{a.id}")
    url = f"/armoires/{armoire.id}/dossiers/{a.id}/renommer"
    response = contributor_client.post(url, data={"csrf_token": token, "name": "  Factures 2026 "})
    assert response.status_code == 303
    db.session.refresh(a)
    assert a.name == "Factures 2026"
    assert actions_for(a.id)[-1] == ("folder.renamed", {"from": "A", "to": "Factures 2026"})
    # A sibling's name, in any case, is a conflict; an empty name is refused.
    response = contributor_client.post(url, data={"csrf_token": token, "name": "autre"}, headers={"HX-Request": "true"})
    assert response.status_code == 409 and "porte déjà ce nom" in response.get_data(as_text=True)
    assert contributor_client.post(url, data={"csrf_token": token, "name": ""}).status_code == 422
    db.session.refresh(a)
    assert a.name == "Factures 2026"


def test_move_folder_refuses_cycles_and_other_armoires(contributor_client, contributor, admin, armoire):
    a, b, c, other = tree(contributor, armoire)
    token = csrf(contributor_client, f"/armoires/{armoire.id}/dossiers/{a.id}")

    def move(folder, parent_id):
        return contributor_client.post(
            f"/armoires/{armoire.id}/dossiers/{folder.id}/deplacer",
            data={"csrf_token": token, "parent_id": parent_id},
            headers={"HX-Request": "true"},
        )

    for target in (a, b, c):  # into itself or a descendant
        response = move(a, target.id)
        assert response.status_code == 409, target.name
        assert "lui-même" in response.get_data(as_text=True)
    db.session.refresh(a)
    assert a.parent_id is None

    assert move(b, other.id).headers.get("HX-Redirect")
    db.session.refresh(b)
    assert b.parent_id == other.id
    assert actions_for(b.id)[-1] == ("folder.moved", {"armoire": armoire.id, "from": a.id, "to": other.id})
    assert move(b, "").headers.get("HX-Redirect")  # to the root
    db.session.refresh(b)
    assert b.parent_id is None

    # A folder of another armoire (same organisation) is not a destination.
    second = armoires.create_armoire(Actor(admin.organization_id, admin.id), "Autre armoire")
    elsewhere = folders.create_folder(Actor(admin.organization_id, admin.id), second, None, "Ailleurs")
    db.session.commit()
    assert move(c, elsewhere.id).status_code == 404
    db.session.refresh(c)
    assert c.parent_id == b.id

    # A name already used at the destination.
    folders.create_folder(Actor(contributor.organization_id, contributor.id), armoire, other, "C")
    db.session.commit()
    assert move(c, other.id).status_code == 409


def test_delete_only_empty_folders(contributor_client, contributor, armoire):
    a, b, c, _other = tree(contributor, armoire)
    token = csrf(contributor_client, f"/armoires/{armoire.id}/dossiers/{a.id}")

    ids = {folder: folder.id for folder in (a, b, c)}

    def delete(folder):
        return contributor_client.post(
            f"/armoires/{armoire.id}/dossiers/{ids[folder]}/supprimer", data={"csrf_token": token}
        )

    response = delete(a)  # has a sub-folder
    assert response.status_code == 409 and "pas vide" in response.get_data(as_text=True)
    upload(contributor_client, armoire.id, "dans-c.txt", b"c", folder_id=c.id)
    live = last_file()
    assert delete(c).status_code == 409  # holds a live file
    # A trashed file does not keep the folder; restoring it puts it at the armoire's root.
    trash.trash_file(Actor(contributor.organization_id, contributor.id), live)
    db.session.commit()
    c_id = c.id
    response = delete(c)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/armoires/{armoire.id}/dossiers/{b.id}")
    assert db.session.get(Folder, c_id) is None
    assert db.session.get(File, live.id).folder_id is None
    assert actions_for(c_id)[-1][0] == "folder.deleted"
    assert delete(b).status_code == 303
    assert delete(a).status_code == 303
    remaining = db.session.execute(db.select(Folder).where(Folder.armoire_id == armoire.id)).scalars().all()
    assert [f.name for f in remaining] == ["Autre"]


def test_folder_page_shows_management_forms_to_writers_only(contributor_client, reader_client, contributor, armoire):
    a, b, _c, _other = tree(contributor, armoire)
    page = contributor_client.get(f"/armoires/{armoire.id}/dossiers/{b.id}").get_data(as_text=True)
    assert "Gérer ce dossier" in page and "Renommer le dossier" in page
    # The move list offers the root and folders outside B's subtree, never B or C.
    assert f'<option value="{a.id}"' in page and '<option value=""' in page
    assert f'<option value="{b.id}"' not in page
    assert "Comptabilité / A / B / C" not in page
    assert "Gérer ce dossier" not in reader_client.get(f"/armoires/{armoire.id}/dossiers/{b.id}").get_data(as_text=True)
    assert "Gérer ce dossier" not in contributor_client.get(f"/armoires/{armoire.id}").get_data(as_text=True)
    assert db.session.get(Armoire, armoire.id) is not None
