"""Role matrix on every documents route, and another organisation's objects are a 404."""

from __future__ import annotations

import pytest

from portal.audit.context import Actor
from portal.documents.services import armoires, folders, trash, uploads
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import last_file, multipart, post_multipart, upload


@pytest.fixture
def world(contributor_client, contributor, armoire):
    """One live file (two versions), one trashed file and a folder in organisation A."""
    actor = Actor(contributor.organization_id, contributor.id)
    folder = folders.create_folder(actor, armoire, None, "Dossier")
    subfolder = folders.create_folder(actor, armoire, None, "Autre")
    db.session.commit()
    upload(contributor_client, armoire.id, "vivant.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    live = last_file()
    upload(contributor_client, armoire.id, "jete.txt", b"jete")
    trashed = last_file()
    trash.trash_file(actor, trashed)
    db.session.commit()
    return {
        "armoire": armoire.id,
        "folder": folder.id,
        "subfolder": subfolder.id,
        "file": live.id,
        "trashed": trashed.id,
    }


# (method, path template, expected status for admin / contributeur / lecteur)
ROUTES = [
    ("GET", "/armoires", 200, 200, 200),
    ("POST:armoire", "/armoires", 303, 403, 403),
    ("POST:rename", "/armoires/{armoire}/renommer", 303, 403, 403),
    ("GET", "/armoires/{armoire}", 200, 200, 200),
    ("GET", "/armoires/{armoire}/dossiers/{folder}", 200, 200, 200),
    ("POST:folder", "/armoires/{armoire}/dossiers", 303, 303, 403),
    ("POST:rename", "/armoires/{armoire}/dossiers/{folder}/renommer", 303, 303, 403),
    ("POST:tofolder", "/armoires/{armoire}/dossiers/{folder}/deplacer", 303, 303, 403),
    ("POST", "/armoires/{armoire}/dossiers/{folder}/supprimer", 303, 303, 403),
    ("UPLOAD", "/armoires/{armoire}/televerser", 201, 201, 403),
    ("GET", "/fichiers/{file}", 200, 200, 200),
    ("GET", "/fichiers/{file}/versions", 200, 200, 200),
    ("GET", "/fichiers/{file}/telecharger", 200, 200, 200),
    ("GET", "/fichiers/{file}/apercu", 200, 200, 200),
    ("UPLOAD", "/fichiers/{file}/version", 201, 201, 403),
    ("POST", "/fichiers/{file}/versions/1/restaurer", 303, 303, 403),
    ("POST:rename", "/fichiers/{file}/renommer", 303, 303, 403),
    ("POST:move", "/fichiers/{file}/deplacer", 303, 303, 403),
    ("GET", "/corbeille", 200, 200, 403),
    ("POST", "/corbeille/{trashed}/restaurer", 303, 303, 403),
    ("POST", "/corbeille/{trashed}/detruire", 303, 403, 403),
    ("POST", "/fichiers/{file}/supprimer", 303, 303, 403),
    ("POST", "/armoires/{armoire}/supprimer", 409, 403, 403),
]


def call(client, method: str, path: str, world: dict, token: str):
    data = {"csrf_token": token}
    kind = method.partition(":")[2]
    if kind in ("armoire", "rename", "folder"):
        data["name"] = f"Nom {kind}"
    if kind == "move":
        data["destination"] = f"{world['armoire']}:{world['folder']}"
    if kind == "tofolder":
        data["parent_id"] = str(world["subfolder"])
    if method == "GET":
        return client.get(path)
    if method == "UPLOAD":
        body = multipart([("csrf_token", token)], [("file", "n.txt", b"nouveau")])
        return post_multipart(client, path, body, headers={"HX-Request": "true"})
    return client.post(path, data=data)


@pytest.mark.parametrize("role_index,role", [(0, "admin"), (1, "contributeur"), (2, "lecteur")])
@pytest.mark.parametrize(
    "method,template,expected", [(r[0], r[1], r[2:]) for r in ROUTES], ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_role_matrix(request, world, role_index, role, method, template, expected):
    client = request.getfixturevalue(
        {"admin": "admin_client", "contributeur": "contributor_client", "lecteur": "reader_client"}[role]
    )
    token = csrf(client, "/armoires")
    response = call(client, method, template.format(**world), world, token)
    assert response.status_code == expected[role_index], response.get_data(as_text=True)[:500]


@pytest.mark.parametrize("method,template", [(r[0], r[1]) for r in ROUTES if "{" in r[1]])
def test_other_organisation_gets_404(make_org, make_user, login_as, world, method, template):
    intruder = make_user("admin", org=make_org("Organisation B"))
    client = login_as(intruder)
    token = csrf(client, "/armoires")
    response = call(client, method, template.format(**world), world, token)
    assert response.status_code == 404


def test_other_organisation_cannot_target_its_own_ids_into_ours(make_org, make_user, login_as, world):
    intruder = make_user("admin", org=make_org("Organisation B"))
    client = login_as(intruder)
    own = armoires.create_armoire(Actor(intruder.organization_id, intruder.id), "B")
    db.session.commit()
    token = csrf(client, "/armoires")
    # Moving one of B's files into A's folder, or uploading into A's folder from B's armoire.
    upload(client, own.id, "b.txt", b"b")
    theirs = last_file()
    response = client.post(
        f"/fichiers/{theirs.id}/deplacer", data={"csrf_token": token, "destination": f"{world['armoire']}:"}
    )
    assert response.status_code == 404
    response = upload(client, own.id, "b2.txt", b"b", folder_id=world["folder"], token=token)
    assert response.status_code == 404
    # Moving one of B's folders under A's folder.
    mine = folders.create_folder(Actor(intruder.organization_id, intruder.id), own, None, "Mien")
    db.session.commit()
    response = client.post(
        f"/armoires/{own.id}/dossiers/{mine.id}/deplacer", data={"csrf_token": token, "parent_id": world["folder"]}
    )
    assert response.status_code == 404
    db.session.refresh(mine)
    assert mine.parent_id is None


def test_anonymous_is_sent_to_login(client, world):
    response = client.get(f"/fichiers/{world['file']}/telecharger")
    assert response.status_code in (302, 401)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/fichiers/{id}/telecharger?version=99999999999999999999"),
        ("get", "/fichiers/{id}/apercu?version=99999999999999999999"),
        ("post", "/fichiers/{id}/versions/99999999999999999999/restaurer"),
    ],
)
def test_a_version_number_beyond_any_column_is_a_404(app, contributor, login_as, method, path):
    from portal.audit.context import Actor
    from portal.documents.services import armoires
    from portal.extensions import db
    from tests.conftest import csrf

    actor = Actor(contributor.organization_id, contributor.id)
    armoire = armoires.create_armoire(actor, "Versions")
    version = uploads.store_upload(actor, armoire, None, "note.txt", [b"bonjour"], 7)
    db.session.commit()
    client = login_as(contributor)
    headers = {"X-CSRFToken": csrf(client)} if method == "post" else {}
    response = getattr(client, method)(path.format(id=version.file_id), headers=headers)
    assert response.status_code == 404
