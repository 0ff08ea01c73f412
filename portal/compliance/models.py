"""Retention rules, legal holds, bypass grants, event dates, disposition decisions, certificates."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.tenancy import OrgOwned

TARGET_TYPES = ("armoire", "folder", "file")
MODES = ("gouvernance", "conformite")
STARTS = ("upload", "last_version", "event")


class RetentionRule(OrgOwned, db.Model):
    """A retention period on an armoire, a folder (inherited by what they hold) or one file."""

    __tablename__ = "regles_conservation"
    # One rule per target: a second one would make "the rule in force" ambiguous.
    __table_args__ = (UniqueConstraint("organization_id", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_type: Mapped[str] = mapped_column(String(10))
    target_id: Mapped[int] = mapped_column(Integer)
    duration_days: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(12))
    # "from" in the API: upload, last_version or event.
    counted_from: Mapped[str] = mapped_column(String(12))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LegalHold(OrgOwned, db.Model):
    """A legal hold on a file, folder or armoire; active while ``released_at`` is None."""

    __tablename__ = "verrouillages"
    __table_args__ = (Index("ix_verrouillages_target", "organization_id", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_type: Mapped[str] = mapped_column(String(10))
    target_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    reference: Mapped[str] = mapped_column(String(120))
    placed_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    release_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class BypassGrant(OrgOwned, db.Model):
    """The per-member "contourner la conservation" permission, granted on top of the role."""

    __tablename__ = "contournements_conservation"
    __table_args__ = (UniqueConstraint("user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"))
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FileEventDate(OrgOwned, db.Model):
    """The event (end of contract…) a file's "from event" retention counts from."""

    __tablename__ = "dates_evenement_fichiers"
    __table_args__ = (UniqueConstraint("file_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("fichiers.id", ondelete="CASCADE"))
    event_date: Mapped[date] = mapped_column(Date)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DestructionCertificate(OrgOwned, db.Model):
    """A signed record of a destruction; ``signed_json`` is the exact document handed out."""

    __tablename__ = "certificats_destruction"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    signed_json: Mapped[str] = mapped_column(Text)


class DispositionDecision(OrgOwned, db.Model):
    """An admin's review of an expired file: keep it longer, or destroy it (with its certificate)."""

    __tablename__ = "decisions_disposition"
    __table_args__ = (Index("ix_decisions_disposition_file", "organization_id", "file_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("fichiers.id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(10))  # keep | destroy
    keep_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificats_destruction.id", ondelete="SET NULL"), default=None
    )
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
