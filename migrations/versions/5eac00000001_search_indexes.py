"""search indexes: folder, author, date and trigram name indexes on fichiers

Revision ID: 5eac00000001
Revises: 53a300000001
Create Date: 2026-12-04 21:10:00

The trigram statements are copied from portal/documents/name_index.py as they stand today:
a migration is a snapshot and must not change when that module does. On PostgreSQL the GIN
index needs pg_trgm; a server without the extension (or a role not allowed to create it)
still migrates, without that index: name searches then scan the name index, as before.
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "5eac00000001"
down_revision = "53a300000001"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

INDEXES = {
    "ix_fichiers_org_folder_live": ["organization_id", "folder_id", "deleted_at", "name_key"],
    "ix_fichiers_org_author_live": ["organization_id", "created_by_id", "deleted_at", "mime_type"],
    "ix_fichiers_org_live_updated": ["organization_id", "deleted_at", "updated_at"],
}
SQLITE = (
    "CREATE VIRTUAL TABLE fichiers_fts USING fts5(name_key, "
    "content='fichiers', content_rowid='id', tokenize='trigram', detail='none', columnsize=0)",
    "CREATE TRIGGER fichiers_fts_ai AFTER INSERT ON fichiers BEGIN "
    "INSERT INTO fichiers_fts(rowid, name_key) VALUES (new.id, new.name_key); END",
    "CREATE TRIGGER fichiers_fts_ad AFTER DELETE ON fichiers BEGIN "
    "INSERT INTO fichiers_fts(fichiers_fts, rowid, name_key) VALUES ('delete', old.id, old.name_key); END",
    "CREATE TRIGGER fichiers_fts_au AFTER UPDATE OF name_key ON fichiers BEGIN "
    "INSERT INTO fichiers_fts(fichiers_fts, rowid, name_key) VALUES ('delete', old.id, old.name_key); "
    "INSERT INTO fichiers_fts(rowid, name_key) VALUES (new.id, new.name_key); END",
    # Index the files stored before this migration.
    "INSERT INTO fichiers_fts(fichiers_fts) VALUES ('rebuild')",
)
POSTGRESQL_INDEX = "CREATE INDEX ix_fichiers_name_key_trgm ON fichiers USING gin (name_key gin_trgm_ops)"


def _postgresql_trigram_index(bind):
    if bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first() is None:
        if bind.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").first() is None:
            logger.warning("pg_trgm is not available: no trigram index on fichiers.name_key")
            return
        try:
            # A savepoint: a refused CREATE EXTENSION must not abort the migration's transaction.
            with bind.begin_nested():
                bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError as error:
            logger.warning("pg_trgm cannot be created (%s): no trigram index on fichiers.name_key", error.orig)
            return
    bind.exec_driver_sql(POSTGRESQL_INDEX)


def upgrade():
    with op.batch_alter_table("fichiers", schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE:
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        _postgresql_trigram_index(bind)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS fichiers_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS fichiers_fts")
    elif bind.dialect.name == "postgresql":
        # The extension stays: the journal's index uses it too.
        op.execute("DROP INDEX IF EXISTS ix_fichiers_name_key_trgm")
    with op.batch_alter_table("fichiers", schema=None) as batch_op:
        for name in reversed(INDEXES):
            batch_op.drop_index(name)
