"""Storage figures kept per armoire as files and versions change, instead of summing
100,000 versions per view.

ORM events of ``File`` and ``FileVersion`` upsert deltas on the flushing connection, so
the counters commit or roll back with the change (atomic ``ON CONFLICT DO UPDATE``, as
for the journal rollups). Every change of a file's state goes through the ORM (trash,
restore, purge and moves) except an upload's rows, which ``documents.services.uploads``
inserts in Core and counts with ``add`` itself; an armoire is deleted only when empty, and
versions are never deleted. ``recount`` is the live sum, for the tests and ``rebuild``.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import case, delete, event, func, inspect, literal, select

from portal.dashboard.models import ArmoireStorage
from portal.database import dialect_insert
from portal.documents.models import File, FileVersion
from portal.extensions import db


@functools.cache
def _upsert(dialect_name: str) -> Any:
    """Built once per dialect (every upload runs it): the deltas are parameters, added with
    ``excluded`` on a conflict."""
    table = ArmoireStorage.__table__
    statement = dialect_insert(table, dialect_name)
    return statement.on_conflict_do_update(
        index_elements=["organization_id", "armoire_id"],
        set_={
            "files": table.c.files + statement.excluded.files,
            "versions": table.c.versions + statement.excluded.versions,
            "bytes": table.c.bytes + statement.excluded.bytes,
        },
    )


def add(connection: Any, organization_id: int, armoire_id: int, files: int, versions: int, size: int) -> None:
    """Add deltas to an armoire's counters on ``connection`` (a Core insert of a file or a
    version, which the ORM events below do not see, calls it itself)."""
    if not (files or versions or size):
        return
    row = {"organization_id": organization_id, "armoire_id": armoire_id, "files": files, "versions": versions}
    connection.execute(_upsert(connection.dialect.name), {**row, "bytes": size})


def _versions_of(connection: Any, file_id: int) -> tuple[int, int]:
    row = connection.execute(
        select(func.count(FileVersion.id), func.coalesce(func.sum(FileVersion.size), 0)).where(
            FileVersion.file_id == file_id
        )
    ).one()
    return int(row[0]), int(row[1])


def _contribution(deleted: Any, purged: Any, versions: tuple[int, int]) -> tuple[int, int, int]:
    live = deleted is None and purged is None
    count, size = versions
    return (1 if live else 0, count if live else 0, 0 if purged is not None else size)


@event.listens_for(File, "after_insert")
def _file_inserted(_mapper: Any, connection: Any, file: File) -> None:
    files, _versions, _size = _contribution(file.deleted_at, file.purged_at, (0, 0))
    add(connection, file.organization_id, file.armoire_id, files, 0, 0)


@event.listens_for(File, "after_update")
def _file_updated(_mapper: Any, connection: Any, file: File) -> None:
    state = inspect(file)
    before = {}
    for name in ("deleted_at", "purged_at", "armoire_id"):
        history = state.attrs[name].history
        before[name] = history.deleted[0] if history.deleted else getattr(file, name)
    if all(before[name] == getattr(file, name) for name in before):
        return
    versions = _versions_of(connection, file.id)
    old = _contribution(before["deleted_at"], before["purged_at"], versions)
    new = _contribution(file.deleted_at, file.purged_at, versions)
    add(connection, file.organization_id, before["armoire_id"], -old[0], -old[1], -old[2])
    add(connection, file.organization_id, file.armoire_id, *new)


@event.listens_for(FileVersion, "after_insert")
def _version_inserted(_mapper: Any, connection: Any, version: FileVersion) -> None:
    row = connection.execute(
        select(File.armoire_id, File.deleted_at, File.purged_at).where(File.id == version.file_id)
    ).one()
    live = row.deleted_at is None and row.purged_at is None
    add(
        connection,
        version.organization_id,
        row.armoire_id,
        0,
        1 if live else 0,
        0 if row.purged_at is not None else int(version.size or 0),
    )


def _recount_statement(organization_id: int) -> Any:
    live = (File.deleted_at.is_(None)) & (File.purged_at.is_(None))
    versions = (
        select(
            FileVersion.file_id.label("file_id"),
            func.count(FileVersion.id).label("count"),
            func.sum(FileVersion.size).label("size"),
        )
        .where(FileVersion.organization_id == organization_id)
        .group_by(FileVersion.file_id)
        .subquery()
    )
    return (
        select(
            literal(organization_id).label("organization_id"),
            File.armoire_id,
            func.sum(case((live, 1), else_=0)),
            func.sum(case((live, func.coalesce(versions.c.count, 0)), else_=0)),
            func.sum(case((File.purged_at.is_(None), func.coalesce(versions.c.size, 0)), else_=0)),
        )
        .outerjoin(versions, versions.c.file_id == File.id)
        .where(File.organization_id == organization_id)
        .group_by(File.armoire_id)
    )


def recount(organization_id: int) -> dict[int, tuple[int, int, int]]:
    """(files, versions, bytes) per armoire, summed from the documents' own tables."""
    return {
        row[1]: (int(row[2]), int(row[3]), int(row[4]))
        for row in db.session.execute(_recount_statement(organization_id))
        if int(row[2]) or int(row[3]) or int(row[4])
    }


def stored(organization_id: int) -> dict[int, tuple[int, int, int]]:
    return {
        row.armoire_id: (row.files, row.versions, row.bytes)
        for row in db.session.execute(
            select(ArmoireStorage).where(ArmoireStorage.organization_id == organization_id)
        ).scalars()
        if row.files or row.versions or row.bytes
    }


def rebuild(organization_id: int) -> None:
    db.session.execute(delete(ArmoireStorage).where(ArmoireStorage.organization_id == organization_id))
    db.session.execute(
        ArmoireStorage.__table__.insert().from_select(
            ["organization_id", "armoire_id", "files", "versions", "bytes"], _recount_statement(organization_id)
        )
    )
    db.session.flush()
