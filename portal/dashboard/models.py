"""Daily rollups of the journal, one row per counted key and UTC day.

No foreign key to members, files or armoires: the journal outlives them and so do
its counts (``user_id`` 0 stands for entries without a member, which the unique
constraints need as a real value rather than NULL).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.security.tenancy import OrgOwned

NO_USER = 0


class DailyActivity(OrgOwned, db.Model):
    """How many entries of one action one member produced on one day."""

    __tablename__ = "tableau_bord_activite"
    __table_args__ = (
        UniqueConstraint("organization_id", "day", "user_id", "action"),
        # The organisation's series read a few actions over a day range: with ``count`` in
        # the index that is an index-only range scan instead of every member's rows.
        Index("ix_tableau_bord_activite_org_action_day", "organization_id", "action", "day", "count"),
        # A member's page reads all their rows over the period: with ``action, count`` in the
        # index it is an index-only range scan too (migration e0a1c0de0001).
        Index("ix_tableau_bord_activite_org_user_day", "organization_id", "user_id", "day", "action", "count"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    user_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    action: Mapped[str] = mapped_column(String(40))
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class DailyFileTouch(OrgOwned, db.Model):
    """That one member touched one file on one day (files touched = distinct file ids)."""

    __tablename__ = "tableau_bord_fichiers"
    __table_args__ = (UniqueConstraint("organization_id", "user_id", "day", "file_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    day: Mapped[date] = mapped_column(Date)
    file_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class DailyArmoireActivity(OrgOwned, db.Model):
    """How many document entries (files, folders, the armoire itself) one armoire had on one day."""

    __tablename__ = "tableau_bord_armoires"
    __table_args__ = (UniqueConstraint("organization_id", "day", "armoire_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    armoire_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class ArmoireStorage(OrgOwned, db.Model):
    """What one armoire holds now: live files, their versions, and the bytes counted against
    the quota (every version of every file not purged, the trash included)."""

    __tablename__ = "tableau_bord_stockage"
    __table_args__ = (UniqueConstraint("organization_id", "armoire_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    armoire_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    files: Mapped[int] = mapped_column(BigInteger, default=0)
    versions: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
