"""The search's indexed paths: folder ids, authors, the trigram pre-selection, the capped count."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from portal.audit.context import Actor
from portal.documents import name_index
from portal.documents.models import File
from portal.documents.services import folders
from portal.extensions import db
from portal.search import services
from tests.api.conftest import bearer


def names(org, **criteria) -> list[str]:
    return sorted(hit.file.name for hit in services.search_files(org.id, services.Criteria(**criteria)).hits)


def test_folder_path_filter_takes_the_folders_below_and_armoire_names(
    app, org, admin, make_armoire, store_file, make_org, make_user
):
    actor = Actor(org.id, admin.id)
    compta = make_armoire(org, "Comptabilité")
    projets = make_armoire(org, "Projets 2026")
    annee = folders.create_folder(actor, compta, None, "Année 2026")
    mars = folders.create_folder(actor, compta, annee, "Mars")
    recues = folders.create_folder(actor, compta, mars, "Factures reçues")
    autre = folders.create_folder(actor, compta, None, "Année 2025")
    sous = folders.create_folder(actor, projets, None, "Plans")
    db.session.commit()
    store_file(admin, compta, "a-racine.txt")
    store_file(admin, compta, "b-annee.txt", folder=annee)
    store_file(admin, compta, "c-mars.txt", folder=mars)
    store_file(admin, compta, "d-recue.txt", folder=recues)
    store_file(admin, compta, "e-2025.txt", folder=autre)
    store_file(admin, projets, "f-projet-racine.txt")
    store_file(admin, projets, "g-plan.txt", folder=sous)
    other = make_org("Autre")
    other_admin = make_user("admin", other)
    other_armoire = make_armoire(other, "Comptabilité")
    other_folder = folders.create_folder(Actor(other.id, other_admin.id), other_armoire, None, "Année 2026")
    db.session.commit()
    store_file(other_admin, other_armoire, "z-autre.txt", folder=other_folder)

    # A folder's path takes every folder below it, accents and case aside.
    assert names(org, path="ANNEE 2026") == ["b-annee.txt", "c-mars.txt", "d-recue.txt"]
    assert names(org, path="annee 2026/mars") == ["c-mars.txt", "d-recue.txt"]
    assert names(org, path="factures recues") == ["d-recue.txt"]
    # An armoire's name takes its root files and its folders' files; a folder named like it too.
    assert names(org, path="2026") == ["b-annee.txt", "c-mars.txt", "d-recue.txt", "f-projet-racine.txt", "g-plan.txt"]
    assert names(org, path="projets") == ["f-projet-racine.txt", "g-plan.txt"]
    assert names(org, path="introuvable") == []
    assert names(org, query="recue", path="2026") == ["d-recue.txt"]


def test_author_filter_with_type_and_dates(app, org, admin, contributor, make_armoire, store_file, make_user):
    armoire = make_armoire(org)
    homonym = make_user("contributeur", org)
    homonym.name = contributor.name + " Junior"
    db.session.commit()
    store_file(admin, armoire, "admin.txt")
    store_file(contributor, armoire, "contrib.txt")
    store_file(contributor, armoire, "contrib.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    store_file(homonym, armoire, "homonyme.txt")
    assert names(org, author=contributor.name.upper()) == ["contrib.png", "contrib.txt", "homonyme.txt"]
    assert names(org, author=homonym.name) == ["homonyme.txt"]
    assert names(org, author=contributor.name, kind="texte") == ["contrib.txt", "homonyme.txt"]
    assert names(org, author="personne de ce nom") == []
    today = datetime.now(UTC).date()
    assert names(org, author=admin.name, since=today, until=today) == ["admin.txt"]


def test_count_stops_at_the_cap(app, org, admin, reader, make_armoire, store_file, make_token, client, monkeypatch):
    armoire = make_armoire(org)
    for number in range(5):
        store_file(admin, armoire, f"relevé {number}.txt")
    monkeypatch.setattr(services, "COUNT_CAP", 3)
    results = services.search_files(org.id, services.Criteria(query="releve"), per_page=2)
    assert (results.page.total, results.capped, results.page.pages) == (3, True, 2)
    exact = services.search_files(org.id, services.Criteria(query="releve 4"))
    assert (exact.page.total, exact.capped) == (1, False)
    body = client.get("/api/v1/recherche?q=releve", headers=bearer(make_token(reader))).get_json()
    assert (body["total"], body["total_capped"]) == (3, True)
    assert len(body["items"]) == 3
    body = client.get("/api/v1/recherche?q=releve%204", headers=bearer(make_token(reader))).get_json()
    assert (body["total"], body["total_capped"]) == (1, False)


def test_capped_count_on_the_page(app, org, admin, admin_client, make_armoire, store_file, monkeypatch):
    armoire = make_armoire(org)
    for number in range(3):
        store_file(admin, armoire, f"bilan {number}.txt")
    monkeypatch.setattr(services, "COUNT_CAP", 2)
    html = admin_client.get("/recherche?q=bilan", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Plus de 2 fichiers trouvés" in html
    monkeypatch.setattr(services, "COUNT_CAP", 10)
    html = admin_client.get("/recherche?q=bilan", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "3 fichiers trouvés" in html and "Plus de" not in html


def test_trigram_preselection_finds_what_the_scan_finds(app, org, admin, make_armoire, store_file, monkeypatch):
    armoire = make_armoire(org)
    store_file(admin, armoire, "Électricité mars.txt")
    store_file(admin, armoire, "electricite avril.txt")
    trashed = store_file(admin, armoire, "électricité trash.txt")
    renamed = store_file(admin, armoire, "Téléphone.txt")
    store_file(admin, armoire, "100%_taux.txt")
    trashed.deleted_at = datetime.now(UTC)
    renamed.name = "Électricité juin.txt"
    db.session.commit()
    queries = ["ELECTRICITE", "tricit", "telephone", "juin", "ité m", "100%_", "0%_t", "%", "zz", "mars.txt"]
    indexed = {query: names(org, query=query) for query in queries}
    # Above the threshold every search scans the name index, the pre-trigram way.
    monkeypatch.setattr(services, "TRIGRAM_CANDIDATES_MAX", -1)
    assert {query: names(org, query=query) for query in queries} == indexed
    assert indexed["ELECTRICITE"] == ["electricite avril.txt", "Électricité juin.txt", "Électricité mars.txt"]
    assert indexed["telephone"] == [] and indexed["ité m"] == ["Électricité mars.txt"]
    assert indexed["100%_"] == ["100%_taux.txt"] and indexed["0%_t"] == ["100%_taux.txt"]
    # A deleted row leaves the trigram table with it (triggers keep it in step).
    db.session.execute(sa.delete(File).where(File.id == renamed.id))
    db.session.commit()
    monkeypatch.setattr(services, "TRIGRAM_CANDIDATES_MAX", 5_000)
    assert names(org, query="juin") == []


def test_a_narrowed_search_counts_in_its_page_and_clamps_past_the_end(app, org, admin, make_armoire, store_file):
    armoire = make_armoire(org)
    for number in range(3):
        store_file(admin, armoire, f"note {number}.txt")
    today = datetime.now(UTC).date()
    first = services.search_files(org.id, services.Criteria(since=today, sort="-name"), page=1, per_page=2)
    assert (first.page.total, first.page.pages, [h.file.name for h in first.hits]) == (
        3,
        2,
        ["note 2.txt", "note 1.txt"],
    )
    beyond = services.search_files(org.id, services.Criteria(since=today, sort="-name"), page=9, per_page=2)
    assert (beyond.page.number, beyond.page.total, [h.file.name for h in beyond.hits]) == (2, 3, ["note 0.txt"])
    none = services.search_files(org.id, services.Criteria(author="personne"), page=3)
    assert (none.page.number, none.page.total, none.hits) == (1, 0, [])


def _statements(org_id: int, criteria: services.Criteria) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if re.search(r"FROM fichiers\b(?!_)", statement):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        services.search_files(org_id, criteria)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize(
    ("criteria", "index"),
    [
        (services.Criteria(path="mars"), "ix_fichiers_org_folder_live"),
        (services.Criteria(author="Admin"), "ix_fichiers_org_author_live"),
        (services.Criteria(author="Admin", kind="pdf", sort="-size"), "ix_fichiers_org_author_live"),
        (services.Criteria(since=datetime.now(UTC).date()), "ix_fichiers_org_live_updated"),
        (services.Criteria(query="electricite"), "INTEGER PRIMARY KEY"),
    ],
)
def test_sqlite_plans_narrow_by_an_index(app, org, admin, make_armoire, store_file, criteria, index):
    """Every statement reading fichiers is narrowed by the filter's own index, not a walk of
    every live file in name order (which the planner prefers when left alone)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plans; PostgreSQL's depend on its statistics (see docs/performance.md)")
    actor = Actor(org.id, admin.id)
    armoire = make_armoire(org)
    folder = folders.create_folder(actor, armoire, None, "Mars")
    db.session.commit()
    store_file(admin, armoire, "electricite.txt", folder=folder)
    admin.name = "Admin Koffi"
    db.session.commit()
    statements = _statements(org.id, criteria)
    assert statements
    with db.engine.connect() as connection:
        # Statistics another test left in this worker's database (the dashboard seed runs
        # ANALYZE) would change the plans; a deployment's database has none.
        if connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
            connection.exec_driver_sql("DELETE FROM sqlite_stat1")
            connection.exec_driver_sql("ANALYZE sqlite_schema")
            connection.commit()
        for statement, parameters in statements:
            plan = " | ".join(
                row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert index in plan, plan
            assert "ix_fichiers_org_live_name_key" not in plan, plan


def test_trigram_objects_exist(app):
    with db.engine.connect() as connection:
        inspector = sa.inspect(connection)
        if connection.dialect.name == "sqlite":
            assert inspector.has_table(name_index.FTS_TABLE)
        else:
            assert name_index.TRGM_INDEX in {index["name"] for index in inspector.get_indexes("fichiers")}
