"""Journal free-text search: FTS5 trigram table (SQLite), pg_trgm GIN index (PostgreSQL)

Revision ID: a1c0ff3e0007
Revises: a1c0ff3e0006
Create Date: 2026-12-03 13:40:00

The statements are copied from portal/audit/search.py as they stand today: a migration is
a snapshot and must not change when that module does.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a1c0ff3e0007'
down_revision = 'a1c0ff3e0006'
branch_labels = None
depends_on = None

SQLITE = (
    "CREATE VIRTUAL TABLE journal_activite_fts USING fts5(target_label, "
    "content='journal_activite', content_rowid='id', tokenize='trigram', detail='none', columnsize=0)",
    "CREATE TRIGGER journal_activite_fts_ai AFTER INSERT ON journal_activite BEGIN "
    "INSERT INTO journal_activite_fts(rowid, target_label) VALUES (new.id, new.target_label); END",
    "CREATE TRIGGER journal_activite_fts_ad AFTER DELETE ON journal_activite BEGIN "
    "INSERT INTO journal_activite_fts(journal_activite_fts, rowid, target_label) "
    "VALUES ('delete', old.id, old.target_label); END",
    "CREATE TRIGGER journal_activite_fts_au AFTER UPDATE OF target_label ON journal_activite BEGIN "
    "INSERT INTO journal_activite_fts(journal_activite_fts, rowid, target_label) "
    "VALUES ('delete', old.id, old.target_label); "
    "INSERT INTO journal_activite_fts(rowid, target_label) VALUES (new.id, new.target_label); END",
    # Index the entries written before this migration.
    "INSERT INTO journal_activite_fts(journal_activite_fts) VALUES ('rebuild')",
)
POSTGRESQL = (
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_journal_activite_label_trgm ON journal_activite "
    "USING gin (lower(target_label) gin_trgm_ops)",
)


def upgrade():
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE, "postgresql": POSTGRESQL}.get(dialect, ()):
        op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS journal_activite_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS journal_activite_fts")
    elif dialect == "postgresql":
        # The extension stays: other objects may use it by now.
        op.execute("DROP INDEX IF EXISTS ix_journal_activite_label_trgm")
