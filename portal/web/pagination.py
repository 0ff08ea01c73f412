"""Offset pagination for lists that a person pages through (members, files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select

from portal.extensions import db

T = TypeVar("T")
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100


@dataclass
class Page(Generic[T]):
    items: list[T]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    def prev_args(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {**extra, "page": self.number - 1}

    def next_args(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {**extra, "page": self.number + 1}


def parse_page(value: object) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1
    return min(max(number, 1), 1_000_000)


def paginate(
    statement: Select[Any], page: object = 1, per_page: int = DEFAULT_PER_PAGE, *, total: int | None = None
) -> Page[Any]:
    """Run ``statement`` for one page; the page number is clamped to what exists.

    ``total``: the row count when the caller has a cheaper way to it than counting the statement."""
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    if total is None:
        total = db.session.execute(select(func.count()).select_from(statement.order_by(None).subquery())).scalar_one()
    pages = max(1, -(-total // per_page))
    number = min(parse_page(page), pages)
    items = list(db.session.execute(statement.limit(per_page).offset((number - 1) * per_page)).scalars())
    return Page(items=items, number=number, per_page=per_page, total=total)
