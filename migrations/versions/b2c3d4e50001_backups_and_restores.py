"""backups, restores and backup settings

Revision ID: b2c3d4e50001
Revises: b2b111e50001
Create Date: 2026-12-03 14:16:08.546201

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b2c3d4e50001'
down_revision = 'b2b111e50001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sauvegardes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verification_ok', sa.Boolean(), nullable=True),
    sa.Column('verification_detail', sa.String(length=500), nullable=True),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['utilisateurs.id'], name=op.f('fk_sauvegardes_created_by_id_utilisateurs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_sauvegardes_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sauvegardes'))
    )
    with op.batch_alter_table('sauvegardes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sauvegardes_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sauvegardes_organization_id'), ['organization_id'], unique=False)

    op.create_table('restaurations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backup_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('skipped', sa.JSON(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['backup_id'], ['sauvegardes.id'], name=op.f('fk_restaurations_backup_id_sauvegardes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['utilisateurs.id'], name=op.f('fk_restaurations_created_by_id_utilisateurs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_restaurations_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_restaurations'))
    )
    with op.batch_alter_table('restaurations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_restaurations_backup_id'), ['backup_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_restaurations_organization_id'), ['organization_id'], unique=False)


    op.create_table('reglages_sauvegardes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('schedule', sa.String(length=20), nullable=False),
    sa.Column('keep_daily', sa.Integer(), nullable=False),
    sa.Column('keep_weekly', sa.Integer(), nullable=False),
    sa.Column('keep_monthly', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_reglages_sauvegardes_organization_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reglages_sauvegardes')),
    sa.UniqueConstraint('organization_id', name=op.f('uq_reglages_sauvegardes_organization_id'))
    )
    with op.batch_alter_table('reglages_sauvegardes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reglages_sauvegardes_organization_id'), ['organization_id'], unique=False)


def downgrade():
    with op.batch_alter_table('reglages_sauvegardes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reglages_sauvegardes_organization_id'))

    op.drop_table('reglages_sauvegardes')
    with op.batch_alter_table('restaurations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_restaurations_organization_id'))
        batch_op.drop_index(batch_op.f('ix_restaurations_backup_id'))

    op.drop_table('restaurations')
    with op.batch_alter_table('sauvegardes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sauvegardes_organization_id'))
        batch_op.drop_index(batch_op.f('ix_sauvegardes_created_at'))

    op.drop_table('sauvegardes')
