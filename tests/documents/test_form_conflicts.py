"""The classic (no-JS) upload form asks when a name is taken: a 409 page listing the names,
nothing stored, and the choice (new version / keep both / cancel) for sending them again."""

from __future__ import annotations

from sqlalchemy import select

from portal.documents.models import File, FileVersion
from portal.extensions import db
from tests.conftest import csrf
from tests.documents.conftest import blob_files, multipart, post_multipart, upload


def live_files() -> list[File]:
    db.session.rollback()
    return list(db.session.execute(select(File).where(File.deleted_at.is_(None)).order_by(File.id)).scalars())


def post_form(client, armoire_id, files, *, choice=None, query="", token):
    fields = [("csrf_token", token)] + ([("on_conflict", choice)] if choice else [])
    return post_multipart(client, f"/armoires/{armoire_id}/televerser{query}", multipart(fields, files))


def test_a_taken_name_answers_a_conflict_page_and_stores_nothing(contributor_client, armoire, storage_dir):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    assert upload(contributor_client, armoire.id, "facture.pdf", b"v1", token=token).status_code == 201
    blobs_before = len(blob_files(storage_dir))
    response = post_form(
        contributor_client,
        armoire.id,
        [("file", "neuf.pdf", b"neuf"), ("file", "facture.pdf", b"v2")],
        token=token,
    )
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "facture.pdf" in page and "facture (2).pdf" in page
    assert "409" not in page.split("<main", 1)[-1].split("</main>")[0]
    assert "Nouvelle version" in page and "Garder les deux" in page and "Annuler" in page
    assert "on_conflict=version" in page and "on_conflict=rename" in page
    # Nothing of the request is kept: not the free name sent with it, not a blob.
    assert [f.name for f in live_files()] == ["facture.pdf"]
    assert len(blob_files(storage_dir)) == blobs_before
    assert len(db.session.execute(select(FileVersion)).scalars().all()) == 1


def test_the_conflict_page_buttons_send_again_as_a_version_or_under_a_free_name(contributor_client, armoire):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    upload(contributor_client, armoire.id, "facture.pdf", b"v1", token=token)
    again = post_form(
        contributor_client, armoire.id, [("file", "facture.pdf", b"v2")], query="?on_conflict=version", token=token
    )
    assert again.status_code == 303
    (file,) = live_files()
    assert file.current_version.number == 2
    kept = post_form(
        contributor_client, armoire.id, [("file", "facture.pdf", b"v3")], query="?on_conflict=rename", token=token
    )
    assert kept.status_code == 303
    assert [f.name for f in live_files()] == ["facture.pdf", "facture (2).pdf"]


def test_the_form_radio_choice_is_read_before_the_file(contributor_client, armoire):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    page = contributor_client.get(f"/armoires/{armoire.id}").get_data(as_text=True)
    assert page.index('name="on_conflict"') < page.index('type="file"')
    upload(contributor_client, armoire.id, "facture.pdf", b"v1", token=token)
    assert (
        post_form(
            contributor_client, armoire.id, [("file", "facture.pdf", b"v2")], choice="rename", token=token
        ).status_code
        == 303
    )
    assert [f.name for f in live_files()] == ["facture.pdf", "facture (2).pdf"]


def test_an_unknown_choice_is_a_clear_422(contributor_client, armoire):
    token = csrf(contributor_client, f"/armoires/{armoire.id}")
    response = post_form(contributor_client, armoire.id, [("file", "a.pdf", b"a")], choice="ecraser", token=token)
    assert response.status_code == 422
    assert live_files() == []
