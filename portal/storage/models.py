"""What the blob stores keep in the database: the multipart uploads an abort could not reach."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db


class AbandonedUpload(db.Model):
    """A multipart upload whose abort failed (the store was unreachable): its parts are
    still billed and kept until ``abandoned.sweep`` aborts it once the store answers.
    Instance-wide, like the store: the object key is opaque and names no organisation."""

    __tablename__ = "envois_s3_abandonnes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(255))
    object_key: Mapped[str] = mapped_column(String(1024))
    upload_id: Mapped[str] = mapped_column(String(1024), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
