"""Listing the live files of a folder: sort, name filter, pages."""

from __future__ import annotations

import logging

from portal.documents.models import Armoire, File, Folder
from portal.documents.sortkey import sort_key
from portal.security.tenancy import scoped
from portal.web.pagination import Page, paginate

logger = logging.getLogger(__name__)


SORTS = {
    "name": (File.name_key, False),
    "-name": (File.name_key, True),
    "size": (File.size, False),
    "-size": (File.size, True),
    "type": (File.mime_type, False),
    "-type": (File.mime_type, True),
    "modified": (File.updated_at, False),
    "-modified": (File.updated_at, True),
}


def list_files(
    organization_id: int,
    armoire: Armoire,
    folder: Folder | None,
    sort: str = "name",
    search: str = "",
    page: object = 1,
    per_page: int = 25,
) -> Page[File]:
    """Live files of a folder, sorted, filtered by name, one page."""
    statement = scoped(File, organization_id).where(File.armoire_id == armoire.id, File.deleted_at.is_(None))
    statement = statement.where(File.folder_id.is_(None) if folder is None else File.folder_id == folder.id)
    search = (search or "").strip()[:100]
    if search:
        escaped = sort_key(search).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(File.name_key.like(f"%{escaped}%", escape="\\"))
    column, descending = SORTS.get(sort, SORTS["name"])
    order = column.desc() if descending else column.asc()
    return paginate(statement.order_by(order, File.id), page, per_page)
