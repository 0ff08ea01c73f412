"""One migration history for SQLite and PostgreSQL that matches the models."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from portal import create_app
from portal.audit import search as journal_search
from portal.documents import name_index
from portal.extensions import db
from tests.conftest import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent


def is_search_object(name: str | None, type_: str) -> bool:
    """The journal's and the file names' trigram objects differ by design between dialects."""
    return journal_search.is_search_object(name, type_) or name_index.is_search_object(name, type_)


def _upgraded_app(url: str, instance: Path):
    return _upgraded_app_at(url, instance, "head")


def _upgraded_app_at(url: str, instance: Path, revision: str):
    os.environ["COFFRE_INSTANCE_DIR"] = str(instance)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SCHEDULER_ENABLED": False})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision=revision)
    return app


def _schema(app) -> dict[str, object]:
    """Tables, columns (name, generic type, nullability), indexes, unique and foreign keys."""
    with app.app_context():
        inspector = sa.inspect(db.engine)
        schema: dict[str, object] = {}
        for table in sorted(inspector.get_table_names()):
            # The trigram indexes differ by design (FTS5 tables vs GIN indexes).
            if table == "alembic_version" or is_search_object(table, "table"):
                continue
            columns = [(c["name"], _generic(c["type"]), c["nullable"]) for c in inspector.get_columns(table)]
            uniques = inspector.get_unique_constraints(table)
            # PostgreSQL also lists each unique constraint as a unique index; SQLite does not.
            constraint_names = {u["name"] for u in uniques}
            schema[table] = {
                "columns": sorted(columns),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                    if i["name"] not in constraint_names and not is_search_object(i["name"], "index")
                ),
                "unique": sorted(tuple(u["column_names"]) for u in uniques),
                "foreign_keys": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                    for f in inspector.get_foreign_keys(table)
                ),
            }
        return schema


def _generic(column_type) -> str:
    name = type(column_type).__name__.upper()
    for generic, words in {
        "integer": ("INT",),
        "string": ("CHAR", "TEXT", "STRING"),
        "datetime": ("DATETIME", "TIMESTAMP"),
        "boolean": ("BOOL",),
        "binary": ("BLOB", "BYTEA", "BINARY"),
        "json": ("JSON",),
        "float": ("FLOAT", "REAL", "NUMERIC", "DOUBLE"),
        "date": ("DATE",),
    }.items():
        if any(word in name for word in words):
            return generic
    return name.lower()


@pytest.fixture
def postgres_url():
    name = f"coffre_migr_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError:
        pytest.skip("PostgreSQL is not reachable")
    yield re.sub(r"/[^/]*$", f"/{name}", POSTGRES_ADMIN_URL)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_upgrade_gives_the_same_schema_on_sqlite_and_postgresql(tmp_path, postgres_url):
    sqlite_app = _upgraded_app(f"sqlite:///{tmp_path / 'migrated.db'}", tmp_path / "i1")
    postgres_app = _upgraded_app(postgres_url, tmp_path / "i2")
    sqlite_schema, postgres_schema = _schema(sqlite_app), _schema(postgres_app)
    for app in (sqlite_app, postgres_app):
        with app.app_context():
            db.engine.dispose()
    assert sqlite_schema.keys() == postgres_schema.keys()
    for table in sqlite_schema:
        assert sqlite_schema[table] == postgres_schema[table], table


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_models(tmp_path, postgres_url, backend):
    url = f"sqlite:///{tmp_path / 'migrated.db'}" if backend == "sqlite" else postgres_url
    app = _upgraded_app(url, tmp_path / "instance")
    with app.app_context():
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, type_, reflected, compare_to: (
                        not (reflected and compare_to is None and is_search_object(name, type_))
                    ),
                },
            )
            differences = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert differences == [], "models and migrations differ: run `flask --app wsgi db migrate`"


def _trigram_rows_after_upgrade(tmp_path, revision: str, insert: str, match: str) -> int:
    """Upgrade a SQLite database to ``revision``, add a row, upgrade to the head, count the FTS matches."""
    app = _upgraded_app_at(f"sqlite:///{tmp_path / 'migrated.db'}", tmp_path / "instance", revision)
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            # The row alone matters here: what it refers to is left out.
            raw.execute("PRAGMA foreign_keys=OFF")
            raw.execute(insert)
            raw.commit()
        finally:
            raw.close()
        upgrade(directory=str(ROOT / "migrations"))
        with db.engine.connect() as connection:
            found = connection.exec_driver_sql(match).all()
        db.engine.dispose()
    return len(found)


def test_search_index_migration_indexes_the_existing_entries(tmp_path):
    insert = (
        "INSERT INTO journal_activite (chain_id, seq, action, target_label, created_at, prev_hash, entry_hash) "
        "VALUES (0, 1, 'user.login', 'Rapport rarissime.pdf', '2026-01-01 00:00:00', 'x', 'x')"
    )
    match = 'SELECT rowid FROM journal_activite_fts WHERE journal_activite_fts MATCH \'"ris" AND "sim"\''
    assert _trigram_rows_after_upgrade(tmp_path, "a1c0ff3e0004", insert, match) == 1


def test_name_index_migration_indexes_the_existing_files(tmp_path):
    insert = (
        "INSERT INTO fichiers (organization_id, armoire_id, name, name_key, size, mime_type, created_at, "
        "updated_at, unavailable) VALUES (1, 1, 'Électricité.pdf', 'electricite.pdf', 1, 'application/pdf', "
        "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)"
    )
    match = 'SELECT rowid FROM fichiers_fts WHERE fichiers_fts MATCH \'"tri" AND "ite"\''
    assert _trigram_rows_after_upgrade(tmp_path, "53a300000001", insert, match) == 1


def test_search_migration_without_pg_trgm(tmp_path, postgres_url):
    """A server where pg_trgm cannot be created still migrates: the B-tree indexes come, the
    trigram index does not, and the migration's transaction is not left aborted."""
    app = _upgraded_app_at(postgres_url, tmp_path / "instance", "53a300000001")
    role = f"coffre_noext_{secrets.token_hex(4)}"
    database = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        # Without the journal's index the extension can go; a role without CREATE on the
        # database may not create it again (trusted extensions need that privilege).
        connection.exec_driver_sql("DROP INDEX ix_journal_activite_label_trgm")
        connection.exec_driver_sql("DROP EXTENSION pg_trgm")
        connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        connection.exec_driver_sql(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
        connection.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
        connection.exec_driver_sql(f'ALTER TABLE fichiers OWNER TO "{role}"')
        connection.exec_driver_sql(f'ALTER TABLE alembic_version OWNER TO "{role}"')
    try:
        limited = postgres_url.replace("postgres@", f"{role}@", 1)
        # Up to the search migration only: later ones alter tables this role does not own.
        limited_app = _upgraded_app_at(limited, tmp_path / "instance2", "5eac00000001")
        with limited_app.app_context():
            indexes = {index["name"] for index in sa.inspect(db.engine).get_indexes("fichiers")}
            version = db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            db.session.remove()
            db.engine.dispose()
        assert {"ix_fichiers_org_folder_live", "ix_fichiers_org_author_live", "ix_fichiers_org_live_updated"} <= indexes
        assert "ix_fichiers_name_key_trgm" not in indexes
        assert version == "5eac00000001"
    finally:
        with app.app_context():
            db.engine.dispose()
        with admin.connect() as connection:
            # The role goes now (roles outlive databases); the fixture drops the database.
            connection.exec_driver_sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
            connection.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()
