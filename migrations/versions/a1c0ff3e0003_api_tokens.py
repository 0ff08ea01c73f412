"""Desktop API: bearer tokens

Revision ID: a1c0ff3e0003
Revises: a1c0ff3e0002
Create Date: 2026-11-26 06:12:34.898310

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c0ff3e0003'
down_revision = 'a1c0ff3e0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('jetons_api',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_jetons_api_organization_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_jetons_api_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jetons_api')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_jetons_api_token_hash'))
    )
    with op.batch_alter_table('jetons_api', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jetons_api_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jetons_api_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('jetons_api', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jetons_api_user_id'))
        batch_op.drop_index(batch_op.f('ix_jetons_api_organization_id'))

    op.drop_table('jetons_api')
