"""Dashboard daily rollups of the journal

Revision ID: b2da5b0a0001
Revises: b5c0550d0001
Create Date: 2026-12-03 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b2da5b0a0001'
down_revision = 'b5c0550d0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table('tableau_bord_activite',
    sa.Column('id', _ID, nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', _ID, nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_tableau_bord_activite_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tableau_bord_activite')),
    sa.UniqueConstraint('organization_id', 'day', 'user_id', 'action', name=op.f('uq_tableau_bord_activite_organization_id'))
    )
    op.create_index('ix_tableau_bord_activite_org_action_day', 'tableau_bord_activite', ['organization_id', 'action', 'day', 'count'], unique=False)
    op.create_index('ix_tableau_bord_activite_org_user_day', 'tableau_bord_activite', ['organization_id', 'user_id', 'day'], unique=False)
    op.create_table('tableau_bord_armoires',
    sa.Column('id', _ID, nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('armoire_id', _ID, nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_tableau_bord_armoires_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tableau_bord_armoires')),
    sa.UniqueConstraint('organization_id', 'day', 'armoire_id', name=op.f('uq_tableau_bord_armoires_organization_id'))
    )
    op.create_table('tableau_bord_fichiers',
    sa.Column('id', _ID, nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('user_id', _ID, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('file_id', _ID, nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_tableau_bord_fichiers_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tableau_bord_fichiers')),
    sa.UniqueConstraint('organization_id', 'user_id', 'day', 'file_id', name=op.f('uq_tableau_bord_fichiers_organization_id'))
    )

    op.create_table('tableau_bord_stockage',
    sa.Column('id', _ID, nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('armoire_id', _ID, nullable=False),
    sa.Column('files', sa.BigInteger(), nullable=False),
    sa.Column('versions', sa.BigInteger(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_tableau_bord_stockage_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tableau_bord_stockage')),
    sa.UniqueConstraint('organization_id', 'armoire_id', name=op.f('uq_tableau_bord_stockage_organization_id'))
    )
    # Existing organisations start from their files as they are.
    op.execute(
        "INSERT INTO tableau_bord_stockage (organization_id, armoire_id, files, versions, bytes) "
        "SELECT f.organization_id, f.armoire_id, "
        "SUM(CASE WHEN f.deleted_at IS NULL AND f.purged_at IS NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN f.deleted_at IS NULL AND f.purged_at IS NULL THEN COALESCE(v.n, 0) ELSE 0 END), "
        "SUM(CASE WHEN f.purged_at IS NULL THEN COALESCE(v.size, 0) ELSE 0 END) "
        "FROM fichiers f LEFT JOIN (SELECT file_id, COUNT(*) AS n, SUM(size) AS size FROM versions_fichiers "
        "GROUP BY file_id) v ON v.file_id = f.id GROUP BY f.organization_id, f.armoire_id"
    )

    for table in ('tableau_bord_activite', 'tableau_bord_armoires', 'tableau_bord_fichiers', 'tableau_bord_stockage'):
        op.create_index(op.f(f'ix_{table}_organization_id'), table, ['organization_id'], unique=False)


def downgrade():
    op.drop_table('tableau_bord_stockage')
    op.drop_table('tableau_bord_fichiers')
    op.drop_table('tableau_bord_armoires')
    op.drop_index('ix_tableau_bord_activite_org_user_day', table_name='tableau_bord_activite')
    op.drop_index('ix_tableau_bord_activite_org_action_day', table_name='tableau_bord_activite')
    op.drop_table('tableau_bord_activite')
