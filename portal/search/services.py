"""Searching the organisation's live files: name, folder path, author, type, date range.

Names are matched and sorted on ``name_key`` (portal.documents.sortkey): accents and case
never matter, as in French collation. No request or session here; callers pass the filters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from portal.audit.search import fts_query
from portal.auth.models import User
from portal.documents import name_index
from portal.documents.models import Armoire, File, Folder
from portal.documents.services import listing
from portal.documents.sortkey import sort_key
from portal.extensions import db
from portal.security.tenancy import scoped
from portal.web.pagination import MAX_PER_PAGE, Page, paginate, parse_page

logger = logging.getLogger(__name__)

QUERY_MAX = 100
# Counting stops here: an exact count of a very common word costs a visit per match, and
# nobody pages through more than this. Beyond it the page says "plus de 10 000" and the
# API's ``total`` is this number with ``total_capped`` true.
COUNT_CAP = 10_000
# Up to this many files holding a name's trigrams, SQLite reads each candidate by its id
# (about 4 µs a row); beyond it, scanning the live-name index (about 25 ms at 100,000 files,
# and a page in name order stops early) is cheaper.
TRIGRAM_CANDIDATES_MAX = 5_000
# The same sorts as a folder listing: a search keeps the list's sort.
SORTS = listing.SORTS
# Type filter: a few families people think in, mapped to MIME type prefixes or exact types.
TYPES: dict[str, tuple[str, ...]] = {
    "pdf": ("application/pdf",),
    "image": ("image/",),
    "texte": ("text/", "application/json"),
    "bureautique": (
        "application/vnd.openxmlformats-officedocument.",
        "application/vnd.oasis.opendocument.",
        "application/msword",
        "application/vnd.ms-",
    ),
    "archive": ("application/zip", "application/x-7z", "application/x-tar", "application/gzip", "application/x-rar"),
    "audio": ("audio/",),
    "video": ("video/",),
}


@dataclass
class Criteria:
    """What a search asks for; empty fields are no constraint."""

    query: str = ""
    path: str = ""
    author: str = ""
    kind: str = ""
    since: date | None = None
    until: date | None = None
    sort: str = "name"

    @property
    def is_empty(self) -> bool:
        return not (self.query or self.path or self.author or self.kind or self.since or self.until)


@dataclass
class Hit:
    file: File
    path: str
    armoire_name: str


@dataclass
class Results:
    page: Page[File]
    hits: list[Hit] = field(default_factory=list)
    # More than COUNT_CAP files match: page.total is COUNT_CAP, not the exact count.
    capped: bool = False


def parse_date(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _like(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _folder_paths(organization_id: int, folder_ids: set[int]) -> dict[int, str]:
    """``{folder_id: "A / B / C"}`` for the given folders, walking parents a level at a time."""
    known: dict[int, Folder] = {}
    wanted = set(folder_ids)
    while wanted - known.keys():
        missing = wanted - known.keys()
        rows = db.session.execute(scoped(Folder, organization_id).where(Folder.id.in_(missing))).scalars().all()
        if not rows:
            break
        for row in rows:
            known[row.id] = row
            if row.parent_id:
                wanted.add(row.parent_id)
    paths = {}
    for folder_id in folder_ids:
        names, seen, current = [], set(), known.get(folder_id)
        while current is not None and current.id not in seen:
            seen.add(current.id)
            names.append(current.name)
            current = known.get(current.parent_id) if current.parent_id else None
        paths[folder_id] = " / ".join(reversed(names))
    return paths


def _folders_under_path(organization_id: int, path: str) -> set[int]:
    """Folders whose path (armoire excluded) contains ``path``, and everything below them."""
    rows = db.session.execute(
        select(Folder.id, Folder.parent_id, Folder.name_key).where(Folder.organization_id == organization_id)
    ).all()
    parents = {row.id: row.parent_id for row in rows}
    keys = {row.id: row.name_key for row in rows}

    def full(folder_id: int) -> str:
        names, seen, current = [], set(), folder_id
        while current is not None and current not in seen:
            seen.add(current)
            names.append(keys.get(current, ""))
            current = parents.get(current)
        return "/".join(reversed(names))

    needle = "/".join(part.strip() for part in sort_key(path).split("/") if part.strip())
    return {folder_id for folder_id in keys if needle in full(folder_id)}


def _armoires_named(organization_id: int, path: str) -> list[int]:
    return list(
        db.session.execute(
            select(Armoire.id).where(
                Armoire.organization_id == organization_id, Armoire.name.ilike(_like(path), escape="\\")
            )
        ).scalars()
    )


def _folders_of(organization_id: int, armoire_ids: list[int]) -> set[int]:
    rows = db.session.execute(
        select(Folder.id).where(Folder.organization_id == organization_id, Folder.armoire_id.in_(armoire_ids))
    ).scalars()
    return set(rows)


def _authors(organization_id: int, author: str) -> list[int]:
    return list(
        db.session.execute(
            select(User.id).where(User.organization_id == organization_id, User.name.ilike(_like(author), escape="\\"))
        ).scalars()
    )


@dataclass
class _Filter:
    """A search's WHERE, and what narrows it (which decides the plan on SQLite)."""

    clauses: list
    # The name's trigrams pre-select few enough rows to read each by its id (SQLite).
    by_trigrams: bool = False
    # A folder, author, date or trigram filter narrows the rows: sort its matches rather
    # than walk every live file in name order.
    narrowed: bool = False


def _trigram_candidates(key: str) -> tuple[object, int]:
    """The FTS5 condition for ``key`` and how many files hold its trigrams (up to the limit + 1)."""
    match = name_index.fts.c[name_index.FTS_TABLE].op("MATCH")(fts_query(key))
    limited = select(name_index.fts.c.rowid).where(match).limit(TRIGRAM_CANDIDATES_MAX + 1).subquery()
    return match, db.session.execute(select(func.count()).select_from(limited)).scalar_one()


def _filter(organization_id: int, criteria: Criteria) -> _Filter:
    """The folders, armoires and authors asked for are looked up first (they are few), so that
    each filter is a list of ids that an index narrows by."""
    # The organisation and "deleted_at IS NULL" (the live set: a purged file is a tombstone
    # that keeps its deleted_at) are added by _select, once: SQLite's planner, given the
    # same equality twice, prefers a shorter index.
    found = _Filter(clauses=[])
    if criteria.query:
        key = sort_key(criteria.query)
        # On PostgreSQL this very predicate is served by the pg_trgm index when there is one
        # (its planner weighs it against the name order); on SQLite the FTS5 table pre-selects
        # when its trigrams are selective enough, and the LIKE decides: results do not change.
        found.clauses.append(File.name_key.like(_like(key), escape="\\"))
        if name_index.uses_fts(key, db.engine.dialect.name):
            match, candidates = _trigram_candidates(key)
            if candidates <= TRIGRAM_CANDIDATES_MAX:
                found.clauses.append(File.id.in_(select(name_index.fts.c.rowid).where(match)))
                found.by_trigrams = found.narrowed = True
    if criteria.path:
        # A file matches when its folder's path contains the text, or its armoire's name does.
        armoire_ids = _armoires_named(organization_id, criteria.path.strip())
        folder_ids = _folders_under_path(organization_id, criteria.path) | _folders_of(organization_id, armoire_ids)
        in_folders = File.folder_id.in_(sorted(folder_ids))
        if armoire_ids:
            # Files at an armoire's root have no folder: the two branches never overlap.
            in_folders = or_(in_folders, and_(File.folder_id.is_(None), File.armoire_id.in_(armoire_ids)))
        found.clauses.append(in_folders)
    if criteria.author:
        found.clauses.append(File.created_by_id.in_(_authors(organization_id, criteria.author.strip())))
    if criteria.kind in TYPES:
        kinds = TYPES[criteria.kind]
        found.clauses.append(or_(*(File.mime_type.startswith(prefix, autoescape=True) for prefix in kinds)))
    if criteria.since:
        found.clauses.append(File.updated_at >= datetime.combine(criteria.since, time.min, UTC))
    if criteria.until:
        end = datetime.combine(criteria.until + timedelta(days=1), time.min, UTC)
        found.clauses.append(File.updated_at < end)
    found.narrowed = bool(found.narrowed or criteria.path or criteria.author or criteria.since or criteria.until)
    return found


def _unindexed(column):
    """``+column``: SQLite then uses no index for this term (its documented way to steer a plan)."""
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _select(organization_id: int, found: _Filter) -> Select:
    if found.by_trigrams:
        # Without statistics (nothing runs ANALYZE on SQLite) the planner trusts the
        # organisation's index over the candidates' ids and reads every live file; with the
        # organisation and liveness terms kept out of the indexes, it reads the few candidates
        # by id. Still one organisation's live files.
        return select(File).where(
            _unindexed(File.organization_id) == organization_id, _unindexed(File.deleted_at).is_(None), *found.clauses
        )
    return scoped(File, organization_id).where(File.deleted_at.is_(None), *found.clauses)


def _count(organization_id: int, found: _Filter) -> int:
    """Matches up to COUNT_CAP + 1, counted on the filtered columns alone (an index answers)."""
    capped = _select(organization_id, found).with_only_columns(File.id).limit(COUNT_CAP + 1).subquery()
    return db.session.execute(select(func.count()).select_from(capped)).scalar_one()


def _statement(organization_id: int, criteria: Criteria, found: _Filter) -> Select:
    column, descending = SORTS.get(criteria.sort, SORTS["name"])
    if found.narrowed and db.engine.dialect.name == "sqlite":
        # SQLite would rather walk the name index in order (no sort, LIMIT stops early) and
        # visit every live row to test an author or a folder; a unary + keeps that index out
        # of the ORDER BY, so the narrowing index is used and its few matches sorted.
        column = _unindexed(column)
    # The armoire and author of 25 rows are read by two small queries afterwards, rather than
    # joined to every match before the sort.
    statement = _select(organization_id, found).options(selectinload(File.armoire), selectinload(File.created_by))
    return statement.order_by(column.desc() if descending else column.asc(), File.id)


def _counted_page(
    organization_id: int, criteria: Criteria, found: _Filter, page: object, per_page: int
) -> tuple[Page[File], int] | None:
    """A page and the match count in one statement (``count(*) OVER ()``), for a narrowed
    search: it reads and sorts all its matches anyway, and a separate count would read them
    a second time. None past the last page (or the cap): the caller counts, then clamps."""
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    number = parse_page(page)
    offset = (number - 1) * per_page
    if offset >= COUNT_CAP:
        return None
    statement = _statement(organization_id, criteria, found).add_columns(func.count().over())
    rows = db.session.execute(statement.limit(per_page).offset(offset)).all()
    if not rows and number > 1:
        return None
    total = rows[0][1] if rows else 0
    return Page(items=[row[0] for row in rows], number=number, per_page=per_page, total=min(total, COUNT_CAP)), total


def search_files(organization_id: int, criteria: Criteria, page: object = 1, per_page: int = 25) -> Results:
    """One page of the organisation's live files matching ``criteria``, each with its folder path."""
    criteria.query = (criteria.query or "").strip()[:QUERY_MAX]
    criteria.path = (criteria.path or "").strip()[:QUERY_MAX]
    criteria.author = (criteria.author or "").strip()[:QUERY_MAX]
    found = _filter(organization_id, criteria)
    counted = _counted_page(organization_id, criteria, found, page, per_page) if found.narrowed else None
    if counted is not None:
        result, total = counted
    else:
        total = _count(organization_id, found)
        result = paginate(_statement(organization_id, criteria, found), page, per_page, total=min(total, COUNT_CAP))
    if total > COUNT_CAP:
        # The last page stops at the cap, as the count does.
        del result.items[max(0, COUNT_CAP - (result.number - 1) * result.per_page) :]
    paths = _folder_paths(organization_id, {f.folder_id for f in result.items if f.folder_id})
    hits = [Hit(f, paths.get(f.folder_id, "") if f.folder_id else "", f.armoire.name) for f in result.items]
    return Results(page=result, hits=hits, capped=total > COUNT_CAP)
