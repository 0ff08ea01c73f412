"""Invitation links can be copied again: the token, sealed, on its row

Revision ID: a1c0ff3e0005
Revises: a1c0ff3e0004
Create Date: 2026-11-27 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c0ff3e0005'
down_revision = 'a1c0ff3e0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jetons_compte', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_sealed', sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table('jetons_compte', schema=None) as batch_op:
        batch_op.drop_column('token_sealed')
