from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db


class Organization(db.Model):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    require_2fa: Mapped[bool] = mapped_column(Boolean, default=True)
    # Fed by billing; None means no quota.
    storage_quota_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Organisation settings; None falls back to the instance's configuration.
    session_idle_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    session_absolute_hours: Mapped[int | None] = mapped_column(Integer, default=None)
    # The language of members who chose none (None: the browser's, then French).
    default_locale: Mapped[str | None] = mapped_column(String(5), default=None)

    def __repr__(self) -> str:
        return f"<Organization {self.id}>"
