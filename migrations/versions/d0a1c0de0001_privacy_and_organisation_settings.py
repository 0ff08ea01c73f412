"""privacy: keyed journal labels, pseudonymisation, consultations, organisation settings

Revision ID: d0a1c0de0001
Revises: b2c3d4e50001
Create Date: 2026-12-03 16:50:00

Existing journal entries keep hash_version 1 (their hash covers the label itself) and
keep verifying; entries recorded from now on are version 2 (see portal.crypto.identity).
"""
from alembic import op
import sqlalchemy as sa


revision = 'd0a1c0de0001'
down_revision = "b2c3d4e50001"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (never a table copy): the journal's FTS5 triggers must survive.
    op.add_column('journal_activite', sa.Column('hash_version', sa.SmallInteger(), server_default='1', nullable=False))
    op.add_column('journal_activite', sa.Column('label_digest', sa.String(length=64), nullable=True))
    op.add_column('journal_activite', sa.Column('label_proof', sa.String(length=64), nullable=True))
    op.add_column('journal_activite', sa.Column('label_sealed', sa.Text(), nullable=True))
    with op.batch_alter_table('utilisateurs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pseudonymised_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_idle_minutes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('session_absolute_hours', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('default_locale', sa.String(length=5), nullable=True))
    op.create_table('consultations_recentes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.Column('viewed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['fichiers.id'], name=op.f('fk_consultations_recentes_file_id_fichiers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_consultations_recentes_organization_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_consultations_recentes_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consultations_recentes')),
    sa.UniqueConstraint('user_id', 'file_id', name='uq_consultations_recentes_user_file')
    )
    with op.batch_alter_table('consultations_recentes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consultations_recentes_file_id'), ['file_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_consultations_recentes_organization_id'), ['organization_id'], unique=False)


def downgrade():
    with op.batch_alter_table('consultations_recentes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consultations_recentes_organization_id'))
        batch_op.drop_index(batch_op.f('ix_consultations_recentes_file_id'))
    op.drop_table('consultations_recentes')
    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.drop_column('default_locale')
        batch_op.drop_column('session_absolute_hours')
        batch_op.drop_column('session_idle_minutes')
    with op.batch_alter_table('utilisateurs', schema=None) as batch_op:
        batch_op.drop_column('pseudonymised_at')
    with op.batch_alter_table('journal_activite', schema=None) as batch_op:
        batch_op.drop_column('label_sealed')
        batch_op.drop_column('label_proof')
        batch_op.drop_column('label_digest')
        batch_op.drop_column('hash_version')
