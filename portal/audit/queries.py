"""Reading the journal: filters, keyset pages (newest first) and streamed exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, func

from portal.audit import search
from portal.audit.actions import ACTIONS
from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.security.tenancy import scoped
from portal.security.text import json_dumps, visible

PAGE_SIZE = 50
EXPORT_BATCH = 1000
MAX_TEXT = 100
# What entries are recorded against.
TARGET_TYPES = (
    "armoire",
    "folder",
    "file",
    "version",
    "user",
    "organization",
    "api_token",
    "backup",
    "payment",
    "subscription",
    "invoice",
    "master_key",
)


@dataclass
class JournalFilter:
    user_id: int | None = None
    action: str | None = None
    target_type: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    text: str | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def query_args(self) -> dict[str, str]:
        """The filter as query-string arguments (for links and exports)."""
        args = {
            "utilisateur": self.user_id,
            "action": self.action,
            "type": self.target_type,
            "du": self.date_from.isoformat() if self.date_from else None,
            "au": self.date_to.isoformat() if self.date_to else None,
            "q": self.text,
        }
        return {key: str(value) for key, value in args.items() if value not in (None, "")}

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("errors")
        return {key: (value.isoformat() if isinstance(value, date) else value) for key, value in data.items() if value}


def parse_filter(args: Mapping[str, str]) -> JournalFilter:
    """Read the filter from query arguments; bad values are reported, never raised."""
    result = JournalFilter()
    raw_user = (args.get("utilisateur") or "").strip()
    if raw_user:
        if raw_user.isascii() and raw_user.isdigit() and len(raw_user) < 12:
            result.user_id = int(raw_user)
        else:
            result.errors["utilisateur"] = str(_l("Utilisateur inconnu."))
    action = (args.get("action") or "").strip()
    if action:
        if action in ACTIONS:
            result.action = action
        else:
            result.errors["action"] = str(_l("Action inconnue."))
    target_type = (args.get("type") or "").strip()
    # The filter once offered "token", which no entry ever had: old links now find the tokens.
    target_type = "api_token" if target_type == "token" else target_type
    if target_type:
        if target_type in TARGET_TYPES:
            result.target_type = target_type
        else:
            result.errors["type"] = str(_l("Type de cible inconnu."))
    for name, attribute in (("du", "date_from"), ("au", "date_to")):
        value = (args.get(name) or "").strip()
        if value:
            try:
                setattr(result, attribute, date.fromisoformat(value))
            except ValueError:
                result.errors[name] = str(_l("Date invalide (format attendu : AAAA-MM-JJ)."))
    if result.date_from and result.date_to and result.date_from > result.date_to:
        result.errors["au"] = str(_l("La date de fin précède la date de début."))
    text = (args.get("q") or "").strip()
    if text:
        if len(text) > MAX_TEXT:
            result.errors["q"] = str(_l("Texte trop long (%(max)d caractères au plus).", max=MAX_TEXT))
        else:
            result.text = text
    return result


def parse_before(value: str | None) -> int | None:
    if value and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filtered(organization_id: int, journal_filter: JournalFilter) -> Select[tuple[AuditEntry]]:
    statement = scoped(AuditEntry, organization_id)  # type: ignore[type-var]
    if journal_filter.user_id is not None:
        statement = statement.where(AuditEntry.user_id == journal_filter.user_id)
    if journal_filter.action:
        statement = statement.where(AuditEntry.action == journal_filter.action)
    if journal_filter.target_type:
        statement = statement.where(AuditEntry.target_type == journal_filter.target_type)
    if journal_filter.date_from:
        start = datetime.combine(journal_filter.date_from, time.min, tzinfo=UTC)
        statement = statement.where(AuditEntry.created_at >= start)
    if journal_filter.date_to:
        end = datetime.combine(journal_filter.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        statement = statement.where(AuditEntry.created_at < end)
    if journal_filter.text:
        text = journal_filter.text.lower()
        # On PostgreSQL this very predicate is served by the pg_trgm index; on SQLite the
        # FTS5 table pre-selects and it decides, so every backend keeps today's results.
        statement = statement.where(func.lower(AuditEntry.target_label).like(f"%{_escape_like(text)}%", escape="\\"))
        if _uses_fts(journal_filter):
            statement = statement.join(search.fts, search.fts.c.rowid == AuditEntry.id).where(
                search.fts.c[search.FTS_TABLE].op("MATCH")(search.fts_query(text))
            )
    return statement


def _uses_fts(journal_filter: JournalFilter) -> bool:
    text = journal_filter.text
    return bool(text) and len(text) >= search.MIN_INDEXED_LENGTH and db.engine.dialect.name == "sqlite"


def order_key(journal_filter: JournalFilter) -> ColumnElement[int]:
    """The entry id to page and sort on.

    With the FTS5 table it is the FTS rowid (the same value): SQLite then walks the
    matches newest first and stops at the page size, instead of collecting every match
    of a common word and sorting them.
    """
    return search.fts.c.rowid if _uses_fts(journal_filter) else AuditEntry.id  # type: ignore[return-value]


@dataclass
class KeysetPage:
    items: list[AuditEntry]
    next_before: int | None
    before: int | None

    @property
    def is_first(self) -> bool:
        return self.before is None


def journal_page(
    organization_id: int, journal_filter: JournalFilter, before: int | None = None, size: int = PAGE_SIZE
) -> KeysetPage:
    """One page, newest first, of entries older than ``before`` (an entry id)."""
    statement = filtered(organization_id, journal_filter)
    key = order_key(journal_filter)
    if before is not None:
        statement = statement.where(key < before)
    rows = list(db.session.execute(statement.order_by(key.desc()).limit(size + 1)).scalars())
    next_before = rows[size - 1].id if len(rows) > size else None
    return KeysetPage(items=rows[:size], next_before=next_before, before=before)


def user_activity(organization_id: int, user_id: int, before: int | None = None, size: int = PAGE_SIZE) -> KeysetPage:
    """What one member did, newest first (also used by the dashboard)."""
    return journal_page(organization_id, JournalFilter(user_id=user_id), before, size)


_EXPORT_COLUMNS = (
    AuditEntry.id,
    AuditEntry.created_at,
    AuditEntry.user_id,
    AuditEntry.action,
    AuditEntry.target_type,
    AuditEntry.target_id,
    AuditEntry.target_label,
    AuditEntry.ip,
    AuditEntry.user_agent,
    AuditEntry.details,
    AuditEntry.seq,
    AuditEntry.entry_hash,
)


def iter_entries(organization_id: int, journal_filter: JournalFilter, batch: int | None = None) -> Iterator[Any]:
    """Every matching entry (as a row of columns), newest first, fetched by keyset in batches.

    Plain rows rather than ORM objects: nothing accumulates in the session. The
    transaction is ended after each batch: on SQLite every transaction holds the write
    lock, and a long export must not stall the writers between its batches.
    """
    batch = batch or EXPORT_BATCH
    key = order_key(journal_filter)
    top = db.session.execute(
        filtered(organization_id, journal_filter).with_only_columns(key).order_by(key.desc()).limit(1)
    ).scalar()
    db.session.rollback()
    if top is None:
        return
    before = top + 1
    while True:
        rows = db.session.execute(
            filtered(organization_id, journal_filter)
            .with_only_columns(*_EXPORT_COLUMNS)
            .where(key < before)
            .order_by(key.desc())
            .limit(batch)
        ).all()
        db.session.rollback()
        yield from rows
        if len(rows) < batch:
            return
        before = rows[-1].id


EXPORT_FIELDS = (
    "id",
    "created_at",
    "user_id",
    "user_name",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "ip",
    "user_agent",
    "details",
    "seq",
    "entry_hash",
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    # Entries keep what they were given; the export must not let CR/LF forge a line for a
    # log reader, nor ESC, C1 or bidi codes drive the terminal that `cat`s it.
    text = visible(value if isinstance(value, str) else str(value))
    # A spreadsheet would run a cell that starts like a formula (CSV injection).
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def _export_record(entry: Any, names: Mapping[int, str]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "created_at": entry.created_at.isoformat(),
        "user_id": entry.user_id,
        "user_name": names.get(entry.user_id) if entry.user_id else None,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "target_label": entry.target_label,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "details": entry.details,
        "seq": entry.seq,
        "entry_hash": entry.entry_hash,
    }


def _with_names(entries: Iterator[Any], organization_id: int) -> Iterator[tuple[Any, dict[int, str]]]:
    from portal.auth.models import User

    names = {
        user.id: user.name
        for user in db.session.execute(scoped(User, organization_id).with_only_columns(User.id, User.name)).all()
    }
    db.session.rollback()
    for entry in entries:
        yield entry, names


def export_csv(organization_id: int, journal_filter: JournalFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    entries = _with_names(iter_entries(organization_id, journal_filter), organization_id)
    for count, (entry, names) in enumerate(entries, start=1):
        record = _export_record(entry, names)
        if record["details"] is not None:
            record["details"] = json_dumps(record["details"], sort_keys=True)
        writer.writerow([_csv_cell(record[name]) for name in EXPORT_FIELDS])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def export_json(organization_id: int, journal_filter: JournalFilter) -> Iterator[str]:
    """A JSON array written entry by entry, so it never sits whole in memory."""
    yield "["
    first = True
    chunk: list[str] = []
    for entry, names in _with_names(iter_entries(organization_id, journal_filter), organization_id):
        chunk.append(("\n" if first else ",\n") + json_dumps(_export_record(entry, names)))
        first = False
        if len(chunk) >= 200:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "\n]\n"
