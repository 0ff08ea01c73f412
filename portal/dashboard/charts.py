"""What the charts draw, as data for ``data-chart`` attributes (the CSP forbids inline scripts).

A year is drawn by month, shorter periods by day; the table under each chart shows the
same buckets, so what is drawn can always be read without the canvas.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask_babel import format_date
from flask_babel import lazy_gettext as _l

from portal.dashboard.formatting import number
from portal.dashboard.services import GlobalFigures, MemberFigures

SERIES = (("uploads", _l("Dépôts")), ("downloads", _l("Téléchargements")), ("deletions", _l("Suppressions")))


def _bucket_label(day: date, monthly: bool) -> str:
    return format_date(day, "MMM yyyy") if monthly else format_date(day, "d MMM")


def _buckets(rows: list[dict[str, Any]], period: int, keys: list[str]) -> list[dict[str, Any]]:
    """Rows per day, summed per month when the period is a year."""
    monthly = period > 90
    buckets: dict[date, dict[str, Any]] = {}
    for row in rows:
        start = row["date"].replace(day=1) if monthly else row["date"]
        bucket = buckets.get(start)
        if bucket is None:
            # Labelled once per bucket: formatting a date is most of a year's chart's cost.
            bucket = buckets[start] = {"label": _bucket_label(start, monthly), **dict.fromkeys(keys, 0)}
        for key in keys:
            bucket[key] += row.get(key, 0)
    return list(buckets.values())


def activity_chart(figures: GlobalFigures, period: int) -> dict[str, Any]:
    keys = [key for key, _label in SERIES]
    buckets = _buckets(figures.activity, period, keys)
    totals = figures.totals
    summary = _l(
        "Sur %(period)s — dépôts : %(uploads)s, téléchargements : %(downloads)s, suppressions : %(deletions)s.",
        period=_period_label(period),
        uploads=number(totals["uploads"]),
        downloads=number(totals["downloads"]),
        deletions=number(totals["deletions"]),
    )
    return {
        "type": "bar",
        "labels": [bucket["label"] for bucket in buckets],
        "datasets": [{"label": str(label), "data": [bucket[key] for bucket in buckets]} for key, label in SERIES],
        "rows": buckets,
        "series": [(key, str(label)) for key, label in SERIES],
        "summary": str(summary),
    }


def member_chart(figures: MemberFigures, period: int) -> dict[str, Any]:
    from portal.audit.rendering import action_label

    codes = sorted(figures.actions, key=lambda code: (-figures.actions[code], code))
    flat = [{"date": day["date"], **day["actions"]} for day in figures.per_day]
    buckets = _buckets(flat, period, codes)
    if codes:
        busiest = codes[0]
        summary = _l(
            "Actions sur %(period)s : %(total)s ; la plus fréquente est « %(action)s » (%(count)s).",
            period=_period_label(period),
            total=number(figures.total),
            action=action_label(busiest),
            count=number(figures.actions[busiest]),
        )
    else:
        summary = _l("Aucune action sur %(period)s.", period=_period_label(period))
    return {
        "type": "bar",
        "stacked": True,
        "labels": [bucket["label"] for bucket in buckets],
        "datasets": [
            {"label": str(action_label(code)), "data": [bucket[code] for bucket in buckets]} for code in codes
        ],
        "rows": buckets,
        "series": [(code, str(action_label(code))) for code in codes],
        "summary": str(summary),
    }


def _period_label(period: int) -> str:
    from portal.dashboard.services import PERIODS

    return str(PERIODS[period])
