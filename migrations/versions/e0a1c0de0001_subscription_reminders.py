"""subscription reminders (one row per subscription, period end and kind); covering index of
the member dashboard's rollup rows

Revision ID: e0a1c0de0001
Revises: c0a1e0000001
Create Date: 2026-12-03 17:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e0a1c0de0001'
down_revision = "c0a1e0000001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rappels_abonnement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_rappels_abonnement_organization_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['abonnements.id'], name=op.f('fk_rappels_abonnement_subscription_id_abonnements'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rappels_abonnement')),
    sa.UniqueConstraint('subscription_id', 'period_end', 'kind', name=op.f('uq_rappels_abonnement_subscription_id'))
    )
    with op.batch_alter_table('rappels_abonnement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rappels_abonnement_organization_id'), ['organization_id'], unique=False)
    with op.batch_alter_table('tableau_bord_activite', schema=None) as batch_op:
        batch_op.drop_index('ix_tableau_bord_activite_org_user_day')
        batch_op.create_index('ix_tableau_bord_activite_org_user_day', ['organization_id', 'user_id', 'day', 'action', 'count'], unique=False)


def downgrade():
    with op.batch_alter_table('tableau_bord_activite', schema=None) as batch_op:
        batch_op.drop_index('ix_tableau_bord_activite_org_user_day')
        batch_op.create_index('ix_tableau_bord_activite_org_user_day', ['organization_id', 'user_id', 'day'], unique=False)
    with op.batch_alter_table('rappels_abonnement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rappels_abonnement_organization_id'))
    op.drop_table('rappels_abonnement')
