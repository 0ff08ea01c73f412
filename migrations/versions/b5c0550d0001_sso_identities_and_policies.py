"""SSO identities keyed on (issuer, sub) and per-organisation SSO policies

Revision ID: b5c0550d0001
Revises: a1c0ff3e0007
Create Date: 2026-12-03 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b5c0550d0001'
down_revision = 'a1c0ff3e0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('identites_sso',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_identites_sso_organization_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_identites_sso_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identites_sso')),
    sa.UniqueConstraint('issuer', 'subject', name=op.f('uq_identites_sso_issuer'))
    )
    with op.batch_alter_table('identites_sso', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identites_sso_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identites_sso_user_id'), ['user_id'], unique=False)

    op.create_table('politiques_sso',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('allowed_providers', sa.Text(), nullable=False),
    sa.Column('allowed_domains', sa.Text(), nullable=False),
    sa.Column('jit_enabled', sa.Boolean(), nullable=False),
    sa.Column('default_role', sa.String(length=20), nullable=False),
    sa.Column('sso_required', sa.Boolean(), nullable=False),
    sa.Column('trust_provider_mfa', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_politiques_sso_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_politiques_sso')),
    sa.UniqueConstraint('organization_id', name=op.f('uq_politiques_sso_organization_id'))
    )
    with op.batch_alter_table('politiques_sso', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_politiques_sso_organization_id'), ['organization_id'], unique=False)


def downgrade():
    with op.batch_alter_table('politiques_sso', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_politiques_sso_organization_id'))
    op.drop_table('politiques_sso')
    with op.batch_alter_table('identites_sso', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identites_sso_user_id'))
        batch_op.drop_index(batch_op.f('ix_identites_sso_organization_id'))
    op.drop_table('identites_sso')
