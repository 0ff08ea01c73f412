"""The compliance report of one organisation: rules by mode, holds, upcoming expiries, dispositions."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from portal.compliance import certificates, disposition
from portal.compliance.holds import active_holds
from portal.compliance.models import LegalHold, RetentionRule
from portal.compliance.rules import file_retention, get_target
from portal.database import utcnow
from portal.documents.errors import NotFound
from portal.documents.models import File
from portal.extensions import db

UPCOMING = timedelta(days=90)


@dataclass
class Report:
    generated_at: datetime
    rules: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)
    upcoming: list[dict[str, Any]] = field(default_factory=list)
    queue: list[Any] = field(default_factory=list)
    decisions: list[Any] = field(default_factory=list)
    certificates: list[Any] = field(default_factory=list)


def _target_name(organization_id: int, target_type: str, target_id: int) -> str:
    try:
        return get_target(organization_id, target_type, target_id).name
    except NotFound:
        return f"{target_type} {target_id}"


def build(organization_id: int) -> Report:
    now = utcnow()
    report = Report(generated_at=now)
    rules = db.session.execute(
        select(RetentionRule)
        .where(RetentionRule.organization_id == organization_id)
        .order_by(RetentionRule.mode, RetentionRule.id)
    ).scalars()
    for rule in rules:
        report.rules.append(
            {"rule": rule, "target_name": _target_name(organization_id, rule.target_type, rule.target_id), "files": 0}
        )
    counts: dict[int, int] = {}
    if report.rules:
        files = db.session.execute(
            select(File).where(File.organization_id == organization_id, File.purged_at.is_(None)).order_by(File.id)
        ).scalars()
        for file in files:
            retention = file_retention(file)
            live = retention.active(now)
            for rule, _end in live:
                counts[rule.id] = counts.get(rule.id, 0) + 1
            end = retention.expires_at()
            if live and end is not None and end <= now + UPCOMING:
                report.upcoming.append({"file": file, "expires_at": end, "mode": live[0][0].mode})
        for row in report.rules:
            row["files"] = counts.get(row["rule"].id, 0)
    report.upcoming.sort(key=lambda row: row["expires_at"])
    for hold in active_holds(organization_id):
        report.holds.append(
            {"hold": hold, "target_name": _target_name(organization_id, hold.target_type, hold.target_id)}
        )
    report.queue = disposition.queue(organization_id, now)
    report.decisions = disposition.recent_decisions(organization_id)
    report.certificates = certificates.recent(organization_id)
    return report


def to_csv(report: Report) -> str:
    """One section per table, each row prefixed by its section (a spreadsheet filters on it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "section",
            "id",
            "target_type",
            "target_id",
            "name",
            "mode",
            "duration_days",
            "from",
            "files",
            "date",
            "reference",
            "reason",
        ]
    )
    for row in report.rules:
        rule = row["rule"]
        writer.writerow(
            [
                "rule",
                rule.id,
                rule.target_type,
                rule.target_id,
                _safe(row["target_name"]),
                rule.mode,
                rule.duration_days,
                rule.counted_from,
                row["files"],
                "",
                "",
                "",
            ]
        )
    for row in report.holds:
        hold: LegalHold = row["hold"]
        writer.writerow(
            [
                "hold",
                hold.id,
                hold.target_type,
                hold.target_id,
                _safe(row["target_name"]),
                "",
                "",
                "",
                "",
                hold.placed_at.isoformat(),
                _safe(hold.reference),
                _safe(hold.reason),
            ]
        )
    for row in report.upcoming:
        file = row["file"]
        writer.writerow(
            [
                "expiry",
                file.id,
                "file",
                file.id,
                _safe(file.name),
                row["mode"],
                "",
                "",
                "",
                row["expires_at"].isoformat(),
                "",
                "",
            ]
        )
    for item in report.queue:
        writer.writerow(
            [
                "disposition",
                item.file.id,
                "file",
                item.file.id,
                _safe(item.file.name),
                item.rule.mode,
                "",
                "",
                "",
                item.expired_at.isoformat(),
                "",
                "",
            ]
        )
    for decision in report.decisions:
        writer.writerow(
            [
                "decision",
                decision.id,
                "file",
                decision.file_id,
                decision.decision,
                "",
                "",
                "",
                "",
                decision.decided_at.isoformat(),
                decision.certificate_id or "",
                "",
            ]
        )
    return buffer.getvalue()


def _safe(value: str | None) -> str:
    """Neutralise spreadsheet formulas in user-supplied text (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_pdf(report: Report, organization_name: str) -> bytes:
    from flask import render_template
    from weasyprint import HTML

    html = render_template("compliance/report_pdf.html", report=report, organization_name=organization_name)
    return HTML(string=html, url_fetcher=certificates._no_fetch).write_pdf()
