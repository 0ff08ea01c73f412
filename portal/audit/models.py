from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.audit import search
from portal.database import UTCDateTime, utcnow
from portal.extensions import db


class AuditEntry(db.Model):
    """One line of the journal. Rows are only ever inserted, never updated or deleted."""

    __tablename__ = "journal_activite"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq", name="uq_journal_activite_chain_seq"),
        Index("ix_journal_activite_org_id_desc", "organization_id", "id"),
        # Keyset pages (newest first) under each filter walk one of these in id order.
        Index("ix_journal_activite_org_user_id", "organization_id", "user_id", "id"),
        Index("ix_journal_activite_org_action_id", "organization_id", "action", "id"),
        Index("ix_journal_activite_org_target_type_id", "organization_id", "target_type", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # NULL for platform events that belong to no organisation (e.g. a login attempt on an
    # unknown address); such entries form the platform chain, chain_id 0.
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True, default=None
    )
    chain_id: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(
        # No ON DELETE: the entry hash covers user_id, so members are deactivated, never deleted.
        ForeignKey("utilisateurs.id"),
        index=True,
        default=None,
    )
    action: Mapped[str] = mapped_column(String(40), index=True)
    target_type: Mapped[str | None] = mapped_column(String(30), default=None)
    target_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    target_label: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(db.Model):
    """The newest link of each chain; updating it first serialises concurrent writers."""

    __tablename__ = "journal_chaines"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))


search.attach(AuditEntry.__table__)
