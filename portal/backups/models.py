from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.tenancy import OrgOwned

TRIGGERS = ("manuel", "planifie", "pre_restauration")
STATUSES = ("en_cours", "reussie", "echouee", "verifiee")


class Backup(OrgOwned, db.Model):
    """One backup of an organisation: a signed manifest naming content-addressed objects."""

    __tablename__ = "sauvegardes"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    trigger: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    status: Mapped[str] = mapped_column(String(20), default="en_cours")
    # {"files", "versions", "bytes", "new_bytes", "objects"}; filled when the backup ends.
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The manifest's path inside the backup directory; None until the manifest is durable.
    path: Mapped[str | None] = mapped_column(String(300), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # None: never verified; the first bad object otherwise.
    verification_ok: Mapped[bool | None] = mapped_column(default=None)
    verification_detail: Mapped[str | None] = mapped_column(String(500), default=None)


class Restore(OrgOwned, db.Model):
    """One restore job from a backup: its scope, progress and outcome."""

    __tablename__ = "restaurations"

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[int] = mapped_column(ForeignKey("sauvegardes.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    # {"file_id": n} | {"folder_id": n} | {"armoire_id": n} | {"all": true}
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="en_cours")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    skipped: Mapped[list[Any]] = mapped_column(JSON, default=list)
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class BackupSettings(OrgOwned, db.Model):
    """An organisation's backup schedule and retention; absent means the defaults."""

    __tablename__ = "reglages_sauvegardes"
    __table_args__ = (db.UniqueConstraint("organization_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "quotidien" or "aucun": the nightly job skips an organisation that opted out.
    schedule: Mapped[str] = mapped_column(String(20), default="quotidien")
    keep_daily: Mapped[int] = mapped_column(default=7)
    keep_weekly: Mapped[int] = mapped_column(default=4)
    keep_monthly: Mapped[int] = mapped_column(default=12)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
