"""A chosen downgrade's switch date (abonnements.next_plan_at)

Revision ID: b1ea00000001
Revises: 5eac00000001
Create Date: 2026-12-04 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b1ea00000001"
down_revision = "5eac00000001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("abonnements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_plan_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("abonnements", schema=None) as batch_op:
        batch_op.drop_column("next_plan_at")
