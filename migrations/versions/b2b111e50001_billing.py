"""Billing: plans (seeded), abonnements, paiements, factures and their yearly counter

Revision ID: b2b111e50001
Revises: b2da5b0a0001
Create Date: 2026-12-03 14:00:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "b2b111e50001"
down_revision = "b2da5b0a0001"
branch_labels = None
depends_on = None

# Prices HT in XOF; a year costs ten months.
PLANS = [
    {
        "code": "essentiel",
        "name": "Essentiel",
        "price_month_ht": 15000,
        "price_year_ht": 150000,
        "storage_quota_mb": 10240,
        "member_quota": 5,
        "features": {"sso": False, "compliance": False, "backup": "hebdomadaire"},
        "position": 1,
        "active": True,
    },
    {
        "code": "pro",
        "name": "Pro",
        "price_month_ht": 45000,
        "price_year_ht": 450000,
        "storage_quota_mb": 102400,
        "member_quota": 25,
        "features": {"sso": True, "compliance": False, "backup": "quotidienne"},
        "position": 2,
        "active": True,
    },
    {
        "code": "entreprise",
        "name": "Entreprise",
        "price_month_ht": 120000,
        "price_year_ht": 1200000,
        "storage_quota_mb": 1048576,
        "member_quota": 200,
        "features": {"sso": True, "compliance": True, "backup": "horaire"},
        "position": 3,
        "active": True,
    },
]


def upgrade():
    plans = op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("price_month_ht", sa.Integer(), nullable=False),
        sa.Column("price_year_ht", sa.Integer(), nullable=False),
        sa.Column("storage_quota_mb", sa.Integer(), nullable=False),
        sa.Column("member_quota", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("code", name=op.f("uq_plans_code")),
    )
    op.create_table(
        "compteurs_factures",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_compteurs_factures")),
    )
    op.create_table(
        "abonnements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_plan_id", sa.Integer(), nullable=True),
        sa.Column("next_period", sa.String(length=10), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["next_plan_id"], ["plans.id"], name=op.f("fk_abonnements_next_plan_id_plans")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organisations.id"],
            name=op.f("fk_abonnements_organization_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_abonnements_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abonnements")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_abonnements_organization_id")),
    )
    with op.batch_alter_table("abonnements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_abonnements_organization_id"), ["organization_id"], unique=False)

    op.create_table(
        "paiements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("network", sa.String(length=20), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("amount_ht", sa.BigInteger(), nullable=False),
        sa.Column("tva_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_ttc", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reference", sa.String(length=80), nullable=True),
        sa.Column("card_url", sa.String(length=500), nullable=True),
        sa.Column("message", sa.String(length=300), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["utilisateurs.id"], name=op.f("fk_paiements_created_by_utilisateurs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organisations.id"],
            name=op.f("fk_paiements_organization_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_paiements_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paiements")),
        sa.UniqueConstraint("reference", name=op.f("uq_paiements_reference")),
    )
    with op.batch_alter_table("paiements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paiements_organization_id"), ["organization_id"], unique=False)
        batch_op.create_index(
            "uq_paiements_pending",
            ["organization_id", "plan_id"],
            unique=True,
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )

    op.create_table(
        "factures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("credited_invoice_id", sa.Integer(), nullable=True),
        sa.Column("plan_name", sa.String(length=80), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_name", sa.String(length=200), nullable=False),
        sa.Column("amount_ht", sa.BigInteger(), nullable=False),
        sa.Column("tva_rate_bp", sa.Integer(), nullable=False),
        sa.Column("tva_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_ttc", sa.BigInteger(), nullable=False),
        sa.Column("payment_method", sa.String(length=40), nullable=True),
        sa.Column("payment_reference", sa.String(length=80), nullable=True),
        sa.Column("verification_token", sa.String(length=64), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("pdf_sha256", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credited_invoice_id"], ["factures.id"], name=op.f("fk_factures_credited_invoice_id_factures")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organisations.id"],
            name=op.f("fk_factures_organization_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["payment_id"], ["paiements.id"], name=op.f("fk_factures_payment_id_paiements")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_factures")),
        sa.UniqueConstraint("number", name=op.f("uq_factures_number")),
        sa.UniqueConstraint("verification_token", name=op.f("uq_factures_verification_token")),
        sa.UniqueConstraint("year", "seq", name=op.f("uq_factures_year")),
    )
    with op.batch_alter_table("factures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_factures_organization_id"), ["organization_id"], unique=False)

    op.bulk_insert(plans, PLANS)


def downgrade():
    op.drop_table("factures")
    op.drop_table("paiements")
    op.drop_table("abonnements")
    op.drop_table("compteurs_factures")
    op.drop_table("plans")
