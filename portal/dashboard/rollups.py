"""Keeping the daily rollups equal to the journal.

``count_entry`` runs inside ``record``: the counts commit or roll back with the entry
they count, and each is one atomic upsert (``INSERT … ON CONFLICT DO UPDATE``), so
concurrent writers add up instead of overwriting each other. ``rebuild`` recounts an
organisation from the journal in SQL (after a bulk import, or to repair), and
``recount`` computes the same figures from the journal to compare.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, cast, delete, func, literal, select, union_all

from portal.audit.models import AuditEntry
from portal.dashboard.models import NO_USER, DailyActivity, DailyArmoireActivity, DailyFileTouch
from portal.database import dialect_insert
from portal.documents.models import File, Folder
from portal.extensions import db

DOCUMENT_TARGETS = ("file", "folder", "armoire")
ROLLUP_MODELS = (DailyActivity, DailyFileTouch, DailyArmoireActivity)


@functools.cache
def _upserts(dialect_name: str) -> tuple[Any, Any, Any]:
    """The three counting upserts, built once per dialect with their values as parameters:
    every journal entry runs them, and building and hashing a statement per entry cost more
    than executing it (issue 10, D15)."""
    activity, touches, armoires = DailyActivity.__table__, DailyFileTouch.__table__, DailyArmoireActivity.__table__
    count_activity = dialect_insert(activity, dialect_name).on_conflict_do_update(
        index_elements=["organization_id", "day", "user_id", "action"], set_={"count": activity.c.count + 1}
    )
    touch_file = dialect_insert(touches, dialect_name).on_conflict_do_nothing(
        index_elements=["organization_id", "user_id", "day", "file_id"]
    )
    count_armoire = dialect_insert(armoires, dialect_name).on_conflict_do_update(
        index_elements=["organization_id", "day", "armoire_id"], set_={"count": armoires.c.count + 1}
    )
    return count_activity, touch_file, count_armoire


def _armoire_of(organization_id: int, target_type: str | None, target_id: int | None, details: Any) -> int | None:
    if target_id is None or target_type not in DOCUMENT_TARGETS:
        return None
    if target_type == "armoire":
        return target_id
    if target_type == "file":
        if isinstance(details, dict) and isinstance(details.get("armoire"), int):
            return details["armoire"]
        model: Any = File
    else:
        model = Folder
    return db.session.execute(
        select(model.armoire_id).where(model.id == target_id, model.organization_id == organization_id)
    ).scalar_one_or_none()


def count_entry(entry: AuditEntry) -> None:
    """Add one journal entry to its organisation's rollups (same transaction, flushed)."""
    organization_id = entry.organization_id
    if organization_id is None:
        return  # platform events belong to no organisation's dashboard
    count_activity, touch_file, count_armoire = _upserts(db.engine.dialect.name)
    day = entry.created_at.date()
    user_id = entry.user_id or NO_USER
    execute = db.session.execute
    execute(
        count_activity,
        {"organization_id": organization_id, "day": day, "user_id": user_id, "action": entry.action, "count": 1},
    )
    if entry.target_type == "file" and entry.target_id is not None and entry.user_id is not None:
        touched = {"organization_id": organization_id, "user_id": user_id, "day": day, "file_id": entry.target_id}
        execute(touch_file, touched)
    armoire_id = _armoire_of(organization_id, entry.target_type, entry.target_id, entry.details)
    if armoire_id is not None:
        execute(count_armoire, {"organization_id": organization_id, "day": day, "armoire_id": armoire_id, "count": 1})


def _day_of(column: Any) -> Any:
    if db.engine.dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite stores UTC as 'YYYY-MM-DD HH:MM:SS.ffffff'


def _entry_armoires(organization_id: int) -> Any:
    """(entry day, armoire id) of every document entry, resolved as ``count_entry`` does."""
    day = _day_of(AuditEntry.created_at)
    mine = AuditEntry.organization_id == organization_id
    direct = select(day.label("day"), AuditEntry.target_id.label("armoire_id")).where(
        mine, AuditEntry.target_type == "armoire", AuditEntry.target_id.is_not(None)
    )
    files = (
        select(day.label("day"), File.armoire_id.label("armoire_id"))
        .join(File, (File.id == AuditEntry.target_id) & (File.organization_id == organization_id))
        .where(mine, AuditEntry.target_type == "file")
    )
    folders = (
        select(day.label("day"), Folder.armoire_id.label("armoire_id"))
        .join(Folder, (Folder.id == AuditEntry.target_id) & (Folder.organization_id == organization_id))
        .where(mine, AuditEntry.target_type == "folder")
    )
    return union_all(direct, files, folders).subquery()


def rebuild(organization_id: int) -> None:
    """Replace an organisation's rollups by a full recount of its journal, and its storage
    counters by a sum of its files (flushed).

    Files are attributed to their armoire of now, not of the entry's day: a rebuild after
    a file moved between armoires counts its past entries in the new one.
    """
    for model in ROLLUP_MODELS:
        db.session.execute(delete(model).where(model.organization_id == organization_id))
    day = _day_of(AuditEntry.created_at)
    user = func.coalesce(AuditEntry.user_id, NO_USER)
    mine = AuditEntry.organization_id == organization_id
    db.session.execute(
        DailyActivity.__table__.insert().from_select(
            ["organization_id", "day", "user_id", "action", "count"],
            select(literal(organization_id), day, user, AuditEntry.action, func.count())
            .where(mine)
            .group_by(day, user, AuditEntry.action),
        )
    )
    db.session.execute(
        DailyFileTouch.__table__.insert().from_select(
            ["organization_id", "user_id", "day", "file_id"],
            select(literal(organization_id), AuditEntry.user_id, day, AuditEntry.target_id)
            .where(
                mine,
                AuditEntry.target_type == "file",
                AuditEntry.target_id.is_not(None),
                AuditEntry.user_id.is_not(None),
            )
            .group_by(AuditEntry.user_id, day, AuditEntry.target_id),
        )
    )
    from portal.dashboard import storage

    storage.rebuild(organization_id)
    armoires = _entry_armoires(organization_id)
    db.session.execute(
        DailyArmoireActivity.__table__.insert().from_select(
            ["organization_id", "day", "armoire_id", "count"],
            select(literal(organization_id), armoires.c.day, armoires.c.armoire_id, func.count())
            .where(armoires.c.armoire_id.is_not(None))
            .group_by(armoires.c.day, armoires.c.armoire_id),
        )
    )
    db.session.flush()


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def recount(organization_id: int) -> dict[str, Counter]:
    """The rollups' content computed from the journal alone, entry by entry."""
    activity: Counter = Counter()
    touches: Counter = Counter()
    rows = db.session.execute(
        select(
            AuditEntry.created_at, AuditEntry.user_id, AuditEntry.action, AuditEntry.target_type, AuditEntry.target_id
        ).where(AuditEntry.organization_id == organization_id)
    )
    for created_at, user_id, action, target_type, target_id in rows:
        activity[(created_at.date(), user_id or NO_USER, action)] += 1
        if target_type == "file" and target_id is not None and user_id is not None:
            touches[(user_id, created_at.date(), target_id)] = 1
    armoires_subquery = _entry_armoires(organization_id)
    armoires: Counter = Counter()
    for day, armoire_id in db.session.execute(select(armoires_subquery.c.day, armoires_subquery.c.armoire_id)):
        if armoire_id is not None:
            armoires[(_as_date(day), armoire_id)] += 1
    return {"activity": activity, "touches": touches, "armoires": armoires}


def stored(organization_id: int) -> dict[str, Counter]:
    """The rollups as stored, in the shape of ``recount``."""
    activity = Counter(
        {
            (_as_date(r.day), r.user_id, r.action): r.count
            for r in db.session.execute(
                select(DailyActivity).where(DailyActivity.organization_id == organization_id)
            ).scalars()
        }
    )
    touches = Counter(
        {
            (r.user_id, _as_date(r.day), r.file_id): 1
            for r in db.session.execute(
                select(DailyFileTouch).where(DailyFileTouch.organization_id == organization_id)
            ).scalars()
        }
    )
    armoires = Counter(
        {
            (_as_date(r.day), r.armoire_id): r.count
            for r in db.session.execute(
                select(DailyArmoireActivity).where(DailyArmoireActivity.organization_id == organization_id)
            ).scalars()
        }
    )
    return {"activity": activity, "touches": touches, "armoires": armoires}
