"""Blob store pointer per version (local directory or S3 bucket)

Revision ID: a7b1c0de0001
Revises: b2c3d4e50001
Create Date: 2026-12-03 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "a7b1c0de0001"
down_revision = "b2c3d4e50001"
branch_labels = None
depends_on = None


def upgrade():
    # NULL means the local directory: every row older than this column has its blob there.
    with op.batch_alter_table("versions_fichiers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_backend", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("versions_fichiers", schema=None) as batch_op:
        batch_op.drop_column("storage_backend")
