"""Organisation-wide search: accents and case ignored, filters, paths, tenancy, the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from portal.audit.context import Actor
from portal.documents.models import File, Folder
from portal.documents.services import folders, listing
from portal.documents.sortkey import sort_key
from portal.extensions import db
from portal.search import services
from tests.api.conftest import bearer


def test_sort_key_folds_accents_case_and_ligatures():
    assert sort_key("École Été") == "ecole ete"
    assert sort_key("Œuvre") == "oeuvre"
    assert sort_key("straße") == "strasse"
    assert sort_key("ÇA") == "ca"


def test_name_key_is_kept_on_create_and_rename(app, org, admin, make_armoire, store_file):
    armoire = make_armoire(org)
    file = store_file(admin, armoire, "Relevé Été.pdf")
    assert file.name_key == "releve ete.pdf"
    file.name = "Œuvre.txt"
    db.session.commit()
    assert db.session.get(File, file.id).name_key == "oeuvre.txt"
    folder = folders.create_folder(Actor(org.id, admin.id), armoire, None, "Énergie")
    db.session.commit()
    assert folder.name_key == "energie"


def test_listing_sorts_ignoring_accents_and_case(app, org, admin, make_armoire, store_file):
    armoire = make_armoire(org)
    for name in ("zèbre.txt", "Été.txt", "ecole.txt", "Abricot.txt", "école2.txt"):
        store_file(admin, armoire, name)
    page = listing.list_files(org.id, armoire, None, "name")
    assert [f.name for f in page.items] == ["Abricot.txt", "ecole.txt", "école2.txt", "Été.txt", "zèbre.txt"]
    assert [f.name for f in listing.list_files(org.id, armoire, None, "name", "ECOLE").items] == [
        "ecole.txt",
        "école2.txt",
    ]


def test_search_by_name_path_author_type_and_dates(app, org, admin, contributor, make_armoire, store_file):
    actor = Actor(org.id, admin.id)
    compta = make_armoire(org, "Comptabilité")
    rh = make_armoire(org, "Ressources humaines")
    factures = folders.create_folder(actor, compta, None, "Factures")
    y2026 = folders.create_folder(actor, compta, factures, "2026")
    db.session.commit()
    a = store_file(admin, compta, "Facture électricité.txt", folder=y2026)
    b = store_file(contributor, rh, "facture-formation.txt")
    c = store_file(admin, compta, "Relevé bancaire.txt")
    png = store_file(admin, compta, "photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)

    def names(**criteria):
        return sorted(hit.file.name for hit in services.search_files(org.id, services.Criteria(**criteria)).hits)

    assert names(query="FACTURE ELEC") == ["Facture électricité.txt"]
    assert names(query="facture") == ["Facture électricité.txt", "facture-formation.txt"]
    assert names(query="facture", path="factures/2026") == ["Facture électricité.txt"]
    assert names(path="ressources") == ["facture-formation.txt"]
    assert names(author=contributor.name.upper()) == ["facture-formation.txt"]
    assert names(kind="image") == ["photo.png"]
    # Dates: move one file into last year; the range keeps the others.
    c.updated_at = datetime.now(UTC) - timedelta(days=400)
    db.session.commit()
    today = datetime.now(UTC).date()
    assert "Relevé bancaire.txt" not in names(since=today - timedelta(days=30))
    assert names(until=today - timedelta(days=300)) == ["Relevé bancaire.txt"]
    hit = next(h for h in services.search_files(org.id, services.Criteria(query="electricite")).hits)
    assert (hit.armoire_name, hit.path) == ("Comptabilité", "Factures / 2026")
    assert {a.id, b.id, png.id} <= {h.file.id for h in services.search_files(org.id, services.Criteria(query=".")).hits}


def test_search_sorts_like_the_list_and_skips_trashed_and_other_orgs(
    app, org, make_org, make_user, admin, make_armoire, store_file
):
    armoire = make_armoire(org)
    for name in ("b-doc.txt", "A-doc.txt", "É-doc.txt"):
        store_file(admin, armoire, name)
    trashed = store_file(admin, armoire, "c-doc.txt")
    trashed.deleted_at = datetime.now(UTC)
    other_org = make_org("Autre")
    other_admin = make_user("admin", other_org)
    store_file(other_admin, make_armoire(other_org), "a-doc-autre.txt")
    db.session.commit()
    hits = services.search_files(org.id, services.Criteria(query="doc", sort="-name")).hits
    assert [h.file.name for h in hits] == ["É-doc.txt", "b-doc.txt", "A-doc.txt"]


def test_search_page_and_header_box(app, org, admin, admin_client, make_armoire, store_file):
    armoire = make_armoire(org)
    store_file(admin, armoire, "Procès-verbal.txt")
    page = admin_client.get("/armoires")
    assert 'action="/recherche"' in page.get_data(as_text=True)
    html = admin_client.get("/recherche?q=proces").get_data(as_text=True)
    assert "Procès-verbal.txt" in html and "Comptabilité" in html
    fragment = admin_client.get("/recherche?q=zzz&tri=-size", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)
    assert admin_client.get("/recherche?du=pas-une-date").status_code == 200


def test_search_api(app, org, admin, reader, make_armoire, store_file, make_token, client):
    armoire = make_armoire(org)
    folder = folders.create_folder(Actor(org.id, admin.id), armoire, None, "Été")
    db.session.commit()
    file = store_file(admin, armoire, "Contrat signé.txt", folder=folder)
    response = client.get("/api/v1/recherche?q=SIGNE", headers=bearer(make_token(reader)))
    assert response.status_code == 200
    body = response.get_json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["id"] == file.id and item["path"] == "Comptabilité / Été" and item["folder_id"] == folder.id
    assert set(item) >= {"id", "name", "path", "armoire_id", "folder_id", "size", "modified_at"}
    assert client.get("/api/v1/recherche?q=x").status_code == 401
    bad = client.get("/api/v1/recherche?q=x&du=demain", headers=bearer(make_token(reader)))
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert client.get("/api/v1/recherche", headers=bearer(make_token(reader))).get_json()["total"] == 0
    assert db.session.query(Folder).count() == 1
