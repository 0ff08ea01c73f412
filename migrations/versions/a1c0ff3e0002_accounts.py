"""Accounts: server-side sessions, second factors, one-time tokens; journal query indexes

Revision ID: a1c0ff3e0002
Revises: 584e11cc1d2b
Create Date: 2026-11-26 06:12:34.898310

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c0ff3e0002'
down_revision = '584e11cc1d2b'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('codes_courriel',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('binding', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_codes_courriel_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_codes_courriel'))
    )
    with op.batch_alter_table('codes_courriel', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_codes_courriel_user_id'), ['user_id'], unique=False)

    op.create_table('codes_recuperation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_codes_recuperation_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_codes_recuperation'))
    )
    with op.batch_alter_table('codes_recuperation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_codes_recuperation_user_id'), ['user_id'], unique=False)

    op.create_table('jetons_compte',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_jetons_compte_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jetons_compte')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_jetons_compte_token_hash'))
    )
    with op.batch_alter_table('jetons_compte', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jetons_compte_user_id'), ['user_id'], unique=False)

    op.create_table('sessions_utilisateurs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('auth_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reauth_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('mfa_pending', sa.Boolean(), nullable=False),
    sa.Column('remember', sa.Boolean(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organisations.id'], name=op.f('fk_sessions_utilisateurs_organization_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['utilisateurs.id'], name=op.f('fk_sessions_utilisateurs_user_id_utilisateurs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions_utilisateurs')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_sessions_utilisateurs_token_hash'))
    )
    with op.batch_alter_table('sessions_utilisateurs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_utilisateurs_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sessions_utilisateurs_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('journal_activite', schema=None) as batch_op:
        batch_op.create_index('ix_journal_activite_org_action_id', ['organization_id', 'action', 'id'], unique=False)
        batch_op.create_index('ix_journal_activite_org_target_type_id', ['organization_id', 'target_type', 'id'], unique=False)
        batch_op.create_index('ix_journal_activite_org_user_id', ['organization_id', 'user_id', 'id'], unique=False)

    with op.batch_alter_table('utilisateurs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('two_factor_method', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('two_factor_enabled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_secret_encrypted', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('totp_pending_encrypted', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('utilisateurs', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_pending_encrypted')
        batch_op.drop_column('totp_secret_encrypted')
        batch_op.drop_column('two_factor_enabled_at')
        batch_op.drop_column('two_factor_method')
        batch_op.drop_column('password_changed_at')

    with op.batch_alter_table('journal_activite', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_activite_org_user_id')
        batch_op.drop_index('ix_journal_activite_org_target_type_id')
        batch_op.drop_index('ix_journal_activite_org_action_id')

    with op.batch_alter_table('sessions_utilisateurs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_utilisateurs_user_id'))
        batch_op.drop_index(batch_op.f('ix_sessions_utilisateurs_organization_id'))

    op.drop_table('sessions_utilisateurs')
    with op.batch_alter_table('jetons_compte', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jetons_compte_user_id'))

    op.drop_table('jetons_compte')
    with op.batch_alter_table('codes_recuperation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_codes_recuperation_user_id'))

    op.drop_table('codes_recuperation')
    with op.batch_alter_table('codes_courriel', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_codes_courriel_user_id'))

    op.drop_table('codes_courriel')
