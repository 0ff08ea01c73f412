"""Wrapped data keys and the shred ledger."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import JSON, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.tenancy import OrgOwned


class DataKey(OrgOwned, db.Model):
    """One data key per file version, only ever stored wrapped by a master key."""

    __tablename__ = "cles_chiffrement"

    id: Mapped[int] = mapped_column(primary_key=True)
    # A random id that survives rewrapping and is never reused, even when a restore from a
    # backup resets the id sequence: the shred ledger names keys by it.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_hex(16))
    # None once shredded: the content it protected can no longer be decrypted.
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # "local:<version>" or "kms:<key arn>": which master key (and version) wraps it.
    master_key_id: Mapped[str] = mapped_column(String(300), index=True)
    # The encryption context ({"org", "file", "version"} as strings); not secret, it is the AAD.
    context: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    shredded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"<DataKey {self.id} {self.master_key_id}{' shredded' if self.shredded_at else ''}>"


class ShredRecord(db.Model):
    """The shred ledger: every data key ever destroyed.

    No foreign keys on purpose: an entry must outlive the key row, the version row and even
    the organisation. Every restore from a backup replays it (``apply_shred_ledger``) before
    serving, so that a backup taken before a purge cannot bring the purged content back.
    """

    __tablename__ = "registre_destructions"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(Integer, index=True)
    data_key_id: Mapped[int] = mapped_column(Integer, index=True)
    data_key_uid: Mapped[str] = mapped_column(String(32), unique=True)
    file_id: Mapped[int | None] = mapped_column(Integer, default=None)
    version_id: Mapped[int | None] = mapped_column(Integer, default=None)
    shredded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(String(200))
