"""Plans, subscriptions (abonnements), payments (paiements) and invoices (factures)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.tenancy import OrgOwned

PERIODS = ("mensuel", "annuel")
STATUS_TRIAL = "essai"
STATUS_ACTIVE = "active"
STATUS_UNPAID = "impayee"
STATUS_READ_ONLY = "lecture_seule"

PENDING = "PENDING"
SUCCESSFUL = "SUCCESSFUL"
FAILED = "FAILED"
EXPIRED = "EXPIRED"


class Plan(db.Model):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    # Prices are HT, in whole francs CFA (XOF has no minor unit).
    price_month_ht: Mapped[int] = mapped_column(Integer)
    price_year_ht: Mapped[int] = mapped_column(Integer)
    storage_quota_mb: Mapped[int] = mapped_column(Integer)
    member_quota: Mapped[int] = mapped_column(Integer)
    features: Mapped[dict] = mapped_column(JSON, default=dict)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def price_ht(self, period: str) -> int:
        return self.price_year_ht if period == "annuel" else self.price_month_ht


class Subscription(OrgOwned, db.Model):
    __tablename__ = "abonnements"
    __table_args__ = (UniqueConstraint("organization_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # None during the trial, which has the smallest plan's quotas.
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"), default=None)
    period: Mapped[str] = mapped_column(String(10), default="mensuel")
    status: Mapped[str] = mapped_column(String(20), default=STATUS_TRIAL)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The plan chosen and not yet in force (an upgrade awaiting payment, a downgrade awaiting the period's end).
    next_plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"), default=None)
    next_period: Mapped[str | None] = mapped_column(String(10), default=None)
    # Set for a downgrade: when the next plan replaces the current one by itself (the current
    # period's end, as chosen). A current_period_end beyond it means the next plan is paid ahead.
    next_plan_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Payment(OrgOwned, db.Model):
    __tablename__ = "paiements"
    __table_args__ = (
        # One pending payment per organisation and plan: a retry finds it instead of charging again.
        Index(
            "uq_paiements_pending",
            "organization_id",
            "plan_id",
            unique=True,
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    period: Mapped[str] = mapped_column(String(10))
    method: Mapped[str] = mapped_column(String(10))  # mobile | carte
    network: Mapped[str | None] = mapped_column(String(20), default=None)
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    amount_ht: Mapped[int] = mapped_column(BigInteger)
    tva_amount: Mapped[int] = mapped_column(BigInteger)
    amount_ttc: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    # FeexPay's reference, known once the gateway accepted the request.
    reference: Mapped[str | None] = mapped_column(String(80), unique=True, default=None)
    card_url: Mapped[str | None] = mapped_column(String(500), default=None)
    message: Mapped[str | None] = mapped_column(String(300), default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class InvoiceCounter(db.Model):
    """The last number issued per year: incremented by UPDATE … RETURNING in the success transaction."""

    __tablename__ = "compteurs_factures"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(OrgOwned, db.Model):
    __tablename__ = "factures"
    __table_args__ = (UniqueConstraint("year", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10), default="facture")  # facture | avoir
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("paiements.id"), default=None)
    credited_invoice_id: Mapped[int | None] = mapped_column(ForeignKey("factures.id"), default=None)
    plan_name: Mapped[str] = mapped_column(String(80))
    period: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    customer_name: Mapped[str] = mapped_column(String(200))
    amount_ht: Mapped[int] = mapped_column(BigInteger)
    tva_rate_bp: Mapped[int] = mapped_column(Integer)  # basis points: 1800 = 18 %
    tva_amount: Mapped[int] = mapped_column(BigInteger)
    amount_ttc: Mapped[int] = mapped_column(BigInteger)
    payment_method: Mapped[str | None] = mapped_column(String(40), default=None)
    payment_reference: Mapped[str | None] = mapped_column(String(80), default=None)
    verification_token: Mapped[str] = mapped_column(String(64), unique=True)
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubscriptionReminder(OrgOwned, db.Model):
    """One reminder e-mail sent for one period's end: the unique row is what makes it sent once.

    The lifecycle job inserts it with ON CONFLICT DO NOTHING before mailing; a second run, or
    another process racing it, inserts nothing and sends nothing.
    """

    __tablename__ = "rappels_abonnement"
    __table_args__ = (UniqueConstraint("subscription_id", "period_end", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("abonnements.id", ondelete="CASCADE"))
    # The end (of the trial or of the paid period) the reminder is about: a new period, new reminders.
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(20))  # j7 | j3 | j1 | j0 | lecture_seule
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
