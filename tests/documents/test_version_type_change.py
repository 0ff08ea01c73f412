"""A new version of another type takes its extension (x.pdf + x.docx -> x.docx), journalled
as a rename; a taken new name is a 409 and nothing is stored. Web and API share the service
(the API case: tests/api/test_conflicts.py)."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.documents.models import File, FileVersion
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import blob_files, last_file, multipart, post_multipart, upload


def new_version(client, file_id, name, content, token):
    body = multipart([("csrf_token", token)], [("file", name, content)])
    return post_multipart(client, f"/fichiers/{file_id}/version", body)


def entries(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


def test_a_version_of_another_type_takes_its_extension_and_journals_the_rename(contributor_client, armoire):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    upload(contributor_client, armoire.id, "Contrat signé.pdf", b"%PDF-1.7 v1", token=token)
    file_id = last_file().id
    response = new_version(contributor_client, file_id, "brouillon.DOCX", b"PK docx", token)
    assert response.status_code == 303
    db.session.rollback()
    file = db.session.get(File, file_id)
    assert file.name == "Contrat signé.DOCX"
    assert file.current_version.number == 2
    (renamed,) = entries("file.renamed")
    assert renamed.target_id == file_id
    assert renamed.details["from"] == "Contrat signé.pdf" and renamed.details["to"] == "Contrat signé.DOCX"
    # The file page and the search find it under its new name.
    assert "Contrat signé.DOCX" in contributor_client.get(f"/fichiers/{file_id}").get_data(as_text=True)


def test_the_same_type_or_no_extension_keeps_the_name(contributor_client, armoire):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    upload(contributor_client, armoire.id, "rapport.pdf", b"v1", token=token)
    file_id = last_file().id
    assert new_version(contributor_client, file_id, "autre nom.PDF", b"v2", token).status_code == 303
    assert new_version(contributor_client, file_id, "scan", b"v3", token).status_code == 303
    db.session.rollback()
    assert db.session.get(File, file_id).name == "rapport.pdf"
    assert entries("file.renamed") == []


def test_a_taken_new_name_is_a_409_and_stores_nothing(contributor_client, armoire, storage_dir):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    upload(contributor_client, armoire.id, "devis.pdf", b"v1", token=token)
    file_id = last_file().id
    upload(contributor_client, armoire.id, "devis.docx", b"autre", token=token)
    blobs = sorted(blob_files(storage_dir))
    response = new_version(contributor_client, file_id, "devis.docx", b"v2", token)
    assert response.status_code == 409
    assert "devis.docx" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(File, file_id).name == "devis.pdf"
    count = db.session.execute(select(db.func.count()).where(FileVersion.file_id == file_id)).scalar_one()
    assert count == 1
    assert sorted(blob_files(storage_dir)) == blobs


def test_name_for_new_version():
    from portal.documents.services.names import name_for_new_version

    assert name_for_new_version("x.pdf", "y.docx") == "x.docx"
    assert name_for_new_version("x.tar.gz", "y.zip") == "x.tar.zip"
    assert name_for_new_version("x.pdf", "y.PDF") == "x.pdf"
    assert name_for_new_version("x.pdf", "y") == "x.pdf"
    assert name_for_new_version("x.pdf", ".bashrc") == "x.pdf"
    assert name_for_new_version("notes", "notes.txt") == "notes.txt"
    assert name_for_new_version("a" * 255, "b.docx") == "a" * 250 + ".docx"
    assert name_for_new_version("x.pdf", None) == "x.pdf"
