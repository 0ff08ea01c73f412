"""Names of armoires, folders and files lose control and bidi characters at input (issue 10, B9)."""

from __future__ import annotations

from portal.documents.models import Armoire, File, Folder
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import last_file, upload

FORGED = "x\r\n[audit] admin deleted all\x1b[31m"
SPOOF = "facture\u202egpj.exe"


def test_armoire_folder_and_file_names_are_cleaned(admin_client, contributor_client, armoire):
    token = csrf(admin_client, "/armoires")
    assert admin_client.post("/armoires", data={"csrf_token": token, "name": FORGED}).status_code in (200, 303)
    created = db.session.execute(db.select(Armoire).order_by(Armoire.id.desc())).scalars().first()
    assert created.name == "x [audit] admin deleted all[31m"

    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    contributor_client.post(f"/armoires/{armoire.id}/dossiers", data={"csrf_token": token, "name": SPOOF})
    folder = db.session.execute(db.select(Folder).where(Folder.armoire_id == armoire.id)).scalars().one()
    assert folder.name == "facturegpj.exe"

    upload(contributor_client, armoire.id, "Le\u0301a\u200b\u2066 rapport\u0080.txt", b"contenu")
    assert last_file().name == "Léa rapport.txt"
    # A zero-width joiner belongs to the writing of many scripts (and emoji): kept.
    upload(contributor_client, armoire.id, "\u0645\u06cc\u200c\u0631\u0648\u0645.txt", b"contenu")
    assert last_file().name == "\u0645\u06cc\u200c\u0631\u0648\u0645.txt"


def test_a_forged_file_name_cannot_forge_a_line_of_the_csv_export(admin_client, armoire):
    upload(admin_client, armoire.id, FORGED + ".txt", b"contenu")
    assert "\x1b" not in db.session.execute(db.select(File.name)).scalars().first()
    export = admin_client.get("/journal/export.csv").get_data(as_text=True)
    assert "\x1b" not in export and "\r\n[audit]" not in export
    assert not any(line.startswith("[audit]") for line in export.splitlines())
