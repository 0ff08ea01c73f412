"""The dashboards' figures, read from counters kept up to date as things happen: storage per
armoire (``portal.dashboard.storage``) and the journal's daily rollups.

Days are UTC days. A period of N days ends today and includes it. Definitions (also in
docs/dashboard.md): documents are files neither in the trash nor purged; versions are
those of such files; space used is the quota's own measure (every stored version of
every file not purged, trash included); uploads are new files and new versions,
downloads are downloads and previews, deletions are files sent to the trash.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, select

from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.dashboard.models import ArmoireStorage, DailyActivity, DailyArmoireActivity, DailyFileTouch
from portal.database import utcnow
from portal.documents.models import Armoire, Folder
from portal.documents.services.quota import quota_bytes
from portal.extensions import db
from portal.organizations.models import Organization
from portal.security.permissions import Role

PERIODS: dict[int, Any] = {7: _l("7 jours"), 30: _l("30 jours"), 90: _l("90 jours"), 365: _l("12 mois")}
DEFAULT_PERIOD = 30
UPLOADS = ("file.added", "file.modified", "version.created")
DOWNLOADS = ("file.downloaded", "file.viewed")  # a preview is a consultation
DELETIONS = ("file.deleted",)
TOP = 5
LAST_LOGINS = 10


class InvalidPeriodError(ValueError):
    pass


def parse_period(value: str | None) -> int:
    """The period in days from ``?periode=``; absent means 30, anything unknown is refused."""
    if value is None or value == "":
        return DEFAULT_PERIOD
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days not in PERIODS:
        raise InvalidPeriodError(str(_l("Période inconnue : choisissez 7, 30, 90 ou 365 jours.")))
    return days


def period_days(days: int, today: date | None = None) -> list[date]:
    today = today or utcnow().date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


@dataclass
class ArmoireFigure:
    id: int
    name: str
    value: int


@dataclass
class GlobalFigures:
    period: int
    armoires: int
    folders: int
    documents: int
    versions: int
    members: dict[str, int]
    bytes_used: int
    quota_bytes: int | None
    two_factor_enabled: int
    activity: list[dict[str, Any]]
    top_by_size: list[ArmoireFigure] = field(default_factory=list)
    top_by_activity: list[ArmoireFigure] = field(default_factory=list)
    last_backup: dict[str, Any] | None = None

    @property
    def active_members(self) -> int:
        return sum(self.members.values())

    @property
    def totals(self) -> dict[str, int]:
        return {key: sum(day[key] for day in self.activity) for key in ("uploads", "downloads", "deletions")}

    def as_json(self) -> dict[str, Any]:
        return {
            "periode": self.period,
            "armoires": self.armoires,
            "folders": self.folders,
            "documents": self.documents,
            "versions": self.versions,
            "members": self.members,
            "bytes_used": self.bytes_used,
            "quota_bytes": self.quota_bytes,
            "two_factor": {"enabled": self.two_factor_enabled, "members": self.active_members},
            "activity": [{**day, "date": day["date"].isoformat()} for day in self.activity],
            "top_armoires_by_size": [{"id": a.id, "name": a.name, "bytes": a.value} for a in self.top_by_size],
            "top_armoires_by_activity": [
                {"id": a.id, "name": a.name, "entries": a.value} for a in self.top_by_activity
            ],
            "last_backup": None
            if self.last_backup is None
            else {
                key: value.isoformat() if hasattr(value, "isoformat") else value
                for key, value in self.last_backup.items()
            },
        }


def _count(statement: Any) -> int:
    return int(db.session.execute(statement).scalar_one())


def _storage(organization_id: int) -> tuple[int, int, int, list[ArmoireFigure]]:
    """(documents, versions, bytes used, top armoires by bytes) from the per-armoire counters."""
    rows = db.session.execute(
        select(ArmoireStorage.armoire_id, ArmoireStorage.files, ArmoireStorage.versions, ArmoireStorage.bytes).where(
            ArmoireStorage.organization_id == organization_id
        )
    ).all()
    ranked = sorted((row for row in rows if row.bytes), key=lambda row: (-row.bytes, row.armoire_id))[:TOP]
    return (
        sum(row.files for row in rows),
        sum(row.versions for row in rows),
        sum(row.bytes for row in rows),
        _named([(row.armoire_id, int(row.bytes)) for row in ranked], organization_id),
    )


def _named(pairs: list[tuple[int, int]], organization_id: int) -> list[ArmoireFigure]:
    if not pairs:
        return []
    names = dict(
        db.session.execute(
            select(Armoire.id, Armoire.name).where(
                Armoire.organization_id == organization_id, Armoire.id.in_([p[0] for p in pairs])
            )
        ).all()
    )
    return [ArmoireFigure(armoire_id, names[armoire_id], value) for armoire_id, value in pairs if armoire_id in names]


def _activity_series(organization_id: int, days: list[date]) -> list[dict[str, Any]]:
    kinds = {**dict.fromkeys(UPLOADS, "uploads"), **dict.fromkeys(DOWNLOADS, "downloads")}
    kinds |= dict.fromkeys(DELETIONS, "deletions")
    series = {day: {"date": day, "uploads": 0, "downloads": 0, "deletions": 0} for day in days}
    rows = db.session.execute(
        select(DailyActivity.day, DailyActivity.action, func.sum(DailyActivity.count))
        .where(
            DailyActivity.organization_id == organization_id,
            DailyActivity.action.in_(list(kinds)),
            DailyActivity.day >= days[0],
            DailyActivity.day <= days[-1],
        )
        .group_by(DailyActivity.day, DailyActivity.action)
    )
    for day, action, count in rows:
        series[day][kinds[action]] += int(count)
    return list(series.values())


def _top_by_activity(organization_id: int, days: list[date]) -> list[ArmoireFigure]:
    total = func.sum(DailyArmoireActivity.count)
    rows = db.session.execute(
        select(DailyArmoireActivity.armoire_id, total)
        .where(
            DailyArmoireActivity.organization_id == organization_id,
            DailyArmoireActivity.day >= days[0],
            DailyArmoireActivity.day <= days[-1],
        )
        .group_by(DailyArmoireActivity.armoire_id)
        .order_by(total.desc(), DailyArmoireActivity.armoire_id)
        # A few extra: armoires deleted since still have counts but no name.
        .limit(TOP * 3)
    ).all()
    return _named([(row[0], int(row[1])) for row in rows], organization_id)[:TOP]


def _last_backup(organization_id: int) -> dict[str, Any] | None:
    """The newest backup and its verification (one row through (organization_id) and created_at)."""
    from portal.backups.models import Backup

    row = db.session.execute(
        select(Backup.id, Backup.created_at, Backup.status, Backup.verified_at, Backup.verification_ok)
        .where(Backup.organization_id == organization_id)
        .order_by(Backup.created_at.desc(), Backup.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row else None


def global_figures(organization_id: int, period: int, today: date | None = None) -> GlobalFigures:
    days = period_days(period, today)
    members = dict.fromkeys((role.value for role in Role), 0)
    for role, count in db.session.execute(
        select(User.role, func.count())
        .where(User.organization_id == organization_id, User.active.is_(True))
        .group_by(User.role)
    ):
        members[role] = int(count)
    documents, versions, used, top_size = _storage(organization_id)
    return GlobalFigures(
        period=period,
        armoires=_count(select(func.count(Armoire.id)).where(Armoire.organization_id == organization_id)),
        folders=_count(select(func.count(Folder.id)).where(Folder.organization_id == organization_id)),
        documents=documents,
        versions=versions,
        members=members,
        bytes_used=used,
        quota_bytes=quota_bytes(organization_id),
        two_factor_enabled=_count(
            select(func.count(User.id)).where(
                User.organization_id == organization_id, User.active.is_(True), User.two_factor_method.is_not(None)
            )
        ),
        activity=_activity_series(organization_id, days),
        top_by_size=top_size,
        top_by_activity=_top_by_activity(organization_id, days),
        last_backup=_last_backup(organization_id),
    )


@dataclass
class MemberFigures:
    period: int
    user_id: int
    actions: dict[str, int]
    per_day: list[dict[str, Any]]
    files_touched: int
    last_logins: list[dict[str, Any]]

    @property
    def total(self) -> int:
        return sum(self.actions.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "periode": self.period,
            "user_id": self.user_id,
            "actions": self.actions,
            "per_day": [{**day, "date": day["date"].isoformat()} for day in self.per_day],
            "files_touched": self.files_touched,
            "last_logins": [{**login, "at": login["at"].isoformat()} for login in self.last_logins],
        }


def member_figures(organization_id: int, user_id: int, period: int, today: date | None = None) -> MemberFigures:
    days = period_days(period, today)
    in_period = and_(DailyActivity.day >= days[0], DailyActivity.day <= days[-1])
    per_day: dict[date, dict[str, int]] = defaultdict(dict)
    actions: dict[str, int] = defaultdict(int)
    for day, action, count in db.session.execute(
        select(DailyActivity.day, DailyActivity.action, DailyActivity.count).where(
            DailyActivity.organization_id == organization_id, DailyActivity.user_id == user_id, in_period
        )
    ):
        per_day[day][action] = int(count)
        actions[action] += int(count)
    files_touched = _count(
        select(func.count(func.distinct(DailyFileTouch.file_id))).where(
            DailyFileTouch.organization_id == organization_id,
            DailyFileTouch.user_id == user_id,
            DailyFileTouch.day >= days[0],
            DailyFileTouch.day <= days[-1],
        )
    )
    logins = db.session.execute(
        select(AuditEntry.created_at, AuditEntry.ip, AuditEntry.user_agent)
        .where(
            AuditEntry.organization_id == organization_id,
            AuditEntry.user_id == user_id,
            AuditEntry.action == "user.login",
        )
        .order_by(AuditEntry.id.desc())
        .limit(LAST_LOGINS)
    ).all()
    from portal.dashboard.formatting import device_name

    return MemberFigures(
        period=period,
        user_id=user_id,
        actions=dict(sorted(actions.items())),
        per_day=[
            {"date": day, "total": sum(per_day[day].values()), "actions": dict(sorted(per_day[day].items()))}
            for day in days
        ],
        files_touched=files_touched,
        last_logins=[
            {"at": at, "ip": ip, "user_agent": agent, "device": str(device_name(agent))} for at, ip, agent in logins
        ],
    )


@dataclass
class PlatformRow:
    id: int
    name: str
    created_at: Any
    members: int
    bytes_used: int
    quota_bytes: int | None
    plan: str | None = None  # None: the trial (or billing never used)
    status: str = "essai"


def platform_rows() -> list[PlatformRow]:
    """Every organisation with its active members, storage (the per-armoire counters, the
    quota's own measure) and billing plan and status."""
    from portal.billing.models import Plan, Subscription

    members = dict(
        db.session.execute(
            select(User.organization_id, func.count()).where(User.active.is_(True)).group_by(User.organization_id)
        ).all()
    )
    storage = dict(
        db.session.execute(
            select(ArmoireStorage.organization_id, func.sum(ArmoireStorage.bytes)).group_by(
                ArmoireStorage.organization_id
            )
        ).all()
    )
    billing = {
        org_id: (plan, status)
        for org_id, plan, status in db.session.execute(
            select(Subscription.organization_id, Plan.name, Subscription.status).outerjoin(
                Plan, Plan.id == Subscription.plan_id
            )
        )
    }
    return [
        PlatformRow(
            org.id,
            org.name,
            org.created_at,
            int(members.get(org.id, 0)),
            int(storage.get(org.id) or 0),
            org.storage_quota_bytes,
            *billing.get(org.id, (None, "essai")),
        )
        for org in db.session.execute(select(Organization).order_by(Organization.name, Organization.id)).scalars()
    ]
