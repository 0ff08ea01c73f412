from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.audit import search
from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.tenancy import OrgOwned


class AuditEntry(db.Model):
    """One line of the journal. Rows are only ever inserted, never deleted.

    The one update is a pseudonymisation (``portal.privacy``): it replaces ``target_label``
    and fills ``label_proof`` (and, on version-1 entries, ``label_sealed``), columns that
    the chain either does not cover or covers through ``label_digest``.
    """

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
    # 1: the hash covers target_label itself (entries written before the privacy work, and
    # rows inserted in bulk by the seeds/benches). 2: it covers label_digest, a keyed hash
    # of the label (portal.crypto.identity), so the label can be pseudonymised.
    hash_version: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    label_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # Set by a pseudonymisation: the server's proof that the label replaced the original
    # (both versions), and for version 1 the original label sealed, which the hash needs.
    label_proof: Mapped[str | None] = mapped_column(String(64), default=None)
    label_sealed: Mapped[str | None] = mapped_column(Text, default=None)


class AuditChainHead(db.Model):
    """The newest link of each chain; updating it first serialises concurrent writers."""

    __tablename__ = "journal_chaines"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))


class RecentView(OrgOwned, db.Model):
    """When a member last had a consultation of a file journalled (``file.viewed``).

    One row per (member, file): the upsert that moves ``viewed_at`` forward only when the
    previous consultation is a minute old decides atomically whether a preview is a new
    journal entry, so two concurrent previews never both record one.
    """

    __tablename__ = "consultations_recentes"
    __table_args__ = (UniqueConstraint("user_id", "file_id", name="uq_consultations_recentes_user_file"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"))
    file_id: Mapped[int] = mapped_column(ForeignKey("fichiers.id", ondelete="CASCADE"), index=True)
    viewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


search.attach(AuditEntry.__table__)
