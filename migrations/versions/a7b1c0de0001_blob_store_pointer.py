"""Blob store pointer per version (local directory or S3 bucket); scheduler period claims

Revision ID: a7b1c0de0001
Revises: c7a100000001
Create Date: 2026-12-03 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "a7b1c0de0001"
down_revision = "c7a100000001"
branch_labels = None
depends_on = None


def upgrade():
    # NULL means the local directory: every row older than this column has its blob there.
    with op.batch_alter_table("versions_fichiers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_backend", sa.String(length=16), nullable=True))
    # One row per (job, period) claimed: the primary key makes a job run once per period.
    op.create_table(
        "planification_executions",
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=40), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("job", "period", name=op.f("pk_planification_executions")),
    )
    with op.batch_alter_table("planification_executions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_planification_executions_claimed_at"), ["claimed_at"], unique=False)


def downgrade():
    with op.batch_alter_table("planification_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_planification_executions_claimed_at"))
    op.drop_table("planification_executions")
    with op.batch_alter_table("versions_fichiers", schema=None) as batch_op:
        batch_op.drop_column("storage_backend")
