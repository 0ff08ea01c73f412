"""name sort keys for files and folders (accent- and case-insensitive search and sort)

Revision ID: c7a100000001
Revises: e0a1c0de0001
Create Date: 2026-12-03 17:10:00

"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "c7a100000001"
down_revision = "e0a1c0de0001"
branch_labels = None
depends_on = None

_EXPANSIONS = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "đ": "d", "ł": "l", "ı": "i"})


def _key(value):
    # A frozen copy of portal.documents.sortkey.sort_key: a migration must not change when the app does.
    text = unicodedata.normalize("NFKD", (value or "").casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.translate(_EXPANSIONS)[:255]


def _backfill(table_name):
    table = sa.table(table_name, sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("name_key", sa.String))
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.select(table.c.id, table.c.name).where(table.c.id > last).order_by(table.c.id).limit(5000)).all()
        if not rows:
            break
        bind.execute(
            table.update().where(table.c.id == sa.bindparam("row_id")).values(name_key=sa.bindparam("key")),
            [{"row_id": row.id, "key": _key(row.name)} for row in rows],
        )
        last = rows[-1].id


def upgrade():
    for table_name in ("fichiers", "dossiers"):
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("name_key", sa.String(length=255), nullable=False, server_default=""))
        _backfill(table_name)
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            batch_op.alter_column("name_key", server_default=None)
    with op.batch_alter_table("fichiers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fichiers_org_live_name_key", ["organization_id", "deleted_at", "name_key"], unique=False
        )


def downgrade():
    with op.batch_alter_table("fichiers", schema=None) as batch_op:
        batch_op.drop_index("ix_fichiers_org_live_name_key")
        batch_op.drop_column("name_key")
    with op.batch_alter_table("dossiers", schema=None) as batch_op:
        batch_op.drop_column("name_key")
