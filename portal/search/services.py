"""Searching the organisation's live files: name, folder path, author, type, date range.

Names are matched and sorted on ``name_key`` (portal.documents.sortkey): accents and case
never matter, as in French collation. No request or session here; callers pass the filters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, or_, select

from portal.auth.models import User
from portal.documents.models import Armoire, File, Folder
from portal.documents.services import listing
from portal.documents.sortkey import sort_key
from portal.extensions import db
from portal.security.tenancy import scoped
from portal.web.pagination import Page, paginate

logger = logging.getLogger(__name__)

QUERY_MAX = 100
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


def _clauses(organization_id: int, criteria: Criteria) -> list:
    # A purged file is a tombstone that keeps its deleted_at: "deleted_at IS NULL" is the live set.
    clauses = [File.organization_id == organization_id, File.deleted_at.is_(None)]
    if criteria.query:
        clauses.append(File.name_key.like(_like(sort_key(criteria.query)), escape="\\"))
    if criteria.path:
        folder_ids = _folders_under_path(organization_id, criteria.path)
        armoire_ids = select(Armoire.id).where(
            Armoire.organization_id == organization_id, Armoire.name.ilike(_like(criteria.path.strip()), escape="\\")
        )
        clauses.append(or_(File.folder_id.in_(folder_ids), File.armoire_id.in_(armoire_ids)))
    if criteria.author:
        authors = select(User.id).where(
            User.organization_id == organization_id, User.name.ilike(_like(criteria.author.strip()), escape="\\")
        )
        clauses.append(File.created_by_id.in_(authors))
    if criteria.kind in TYPES:
        clauses.append(or_(*(File.mime_type.startswith(prefix, autoescape=True) for prefix in TYPES[criteria.kind])))
    if criteria.since:
        clauses.append(File.updated_at >= datetime.combine(criteria.since, time.min, UTC))
    if criteria.until:
        end = datetime.combine(criteria.until + timedelta(days=1), time.min, UTC)
        clauses.append(File.updated_at < end)
    return clauses


def _statement(organization_id: int, criteria: Criteria, clauses: list) -> Select:
    column, descending = SORTS.get(criteria.sort, SORTS["name"])
    statement = scoped(File, organization_id).where(*clauses)
    return statement.order_by(column.desc() if descending else column.asc(), File.id)


def search_files(organization_id: int, criteria: Criteria, page: object = 1, per_page: int = 25) -> Results:
    """One page of the organisation's live files matching ``criteria``, each with its folder path."""
    criteria.query = (criteria.query or "").strip()[:QUERY_MAX]
    criteria.path = (criteria.path or "").strip()[:QUERY_MAX]
    criteria.author = (criteria.author or "").strip()[:QUERY_MAX]
    # Counted on the filtered columns alone (not a subquery of whole rows): with a name filter
    # only, the database answers from the (organization_id, deleted_at, name_key) index.
    clauses = _clauses(organization_id, criteria)
    total = db.session.execute(select(func.count(File.id)).where(*clauses)).scalar_one()
    result = paginate(_statement(organization_id, criteria, clauses), page, per_page, total=total)
    paths = _folder_paths(organization_id, {f.folder_id for f in result.items if f.folder_id})
    hits = [Hit(f, paths.get(f.folder_id, "") if f.folder_id else "", f.armoire.name) for f in result.items]
    return Results(page=result, hits=hits)
