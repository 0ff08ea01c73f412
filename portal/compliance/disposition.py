"""Disposition: files whose retention expired wait for a review (keep longer, or destroy).

Destroying trashes and purges the file through the documents' trash service (which asks
the policy and crypto-shreds every version), then issues a signed destruction certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.compliance.errors import NotExpired
from portal.compliance.holds import active_holds
from portal.compliance.models import DestructionCertificate, DispositionDecision, RetentionRule
from portal.compliance.rules import file_retention, lineage
from portal.database import utcnow
from portal.documents.models import File
from portal.extensions import db


@dataclass
class Expired:
    file: File
    expired_at: datetime
    rule: RetentionRule


def _expired(file: File, now: datetime) -> Expired | None:
    retention = file_retention(file)
    end = retention.expires_at()
    if end is None or end > now or active_holds(file.organization_id, lineage("file", file)):
        return None
    strongest = sorted(retention.rules, key=lambda pair: (pair[0].mode != "conformite", pair[1]), reverse=False)
    return Expired(file, end, strongest[0][0])


def queue(organization_id: int, now: datetime | None = None) -> list[Expired]:
    """Files (live or in the trash, not purged) whose every retention has expired, no hold."""
    now = now or utcnow()
    if (
        db.session.execute(
            select(RetentionRule.id).where(RetentionRule.organization_id == organization_id).limit(1)
        ).first()
        is None
    ):
        return []
    files = db.session.execute(
        select(File).where(File.organization_id == organization_id, File.purged_at.is_(None)).order_by(File.id)
    ).scalars()
    return [item for item in (_expired(file, now) for file in files) if item is not None]


def _require_expired(file: File) -> Expired:
    item = _expired(file, utcnow())
    if item is None:
        # A hold or a running retention: the policy names it (423); otherwise nothing expired.
        from portal.compliance.policy import assert_may_delete

        assert_may_delete(file, Actor.system(file.organization_id), action="disposition")
        raise NotExpired(_("« %(name)s » n'est pas en attente de disposition.", name=file.name))
    return item


def keep(actor: Actor, file: File, extend_days: int) -> DispositionDecision:
    """Keep an expired file ``extend_days`` more (counted from now); journalled."""
    _require_expired(file)
    until = utcnow() + timedelta(days=extend_days)
    decision = DispositionDecision(
        organization_id=file.organization_id,
        file_id=file.id,
        decision="keep",
        keep_until=until,
        decided_by_id=actor.user_id,
    )
    db.session.add(decision)
    db.session.flush()
    record(
        "disposition.kept",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"extend_days": extend_days, "keep_until": until.isoformat()},
    )
    return decision


def destroy(actor: Actor, file: File, approver) -> tuple[DestructionCertificate, list[str]]:
    """Destroy an expired file: every version crypto-shredded, then a signed certificate.

    Returns the certificate and the blob keys to delete after the commit."""
    from portal.compliance import certificates
    from portal.documents.services import trash
    from portal.documents.services.versions import list_versions

    item = _require_expired(file)
    versions = [
        {"number": v.number, "sha256": v.sha256, "size": v.size, "created_at": v.created_at.isoformat()}
        for v in list_versions(file)
    ]
    current = file.current_version
    entry = {
        "id": file.id,
        "name": file.name,
        "sha256": current.sha256 if current is not None else None,
        "versions": versions,
        "uploaded_at": file.created_at.isoformat(),
        "rule": {
            "id": item.rule.id,
            "mode": item.rule.mode,
            "duration_days": item.rule.duration_days,
            "from": item.rule.counted_from,
            "target_type": item.rule.target_type,
            "target_id": item.rule.target_id,
        },
        "retention_expired_at": item.expired_at.isoformat(),
    }
    if file.deleted_at is None:
        trash.trash_file(actor, file)
    keys = trash.purge_file(actor, file, reason="disposition")
    entry["destroyed_at"] = file.purged_at.isoformat() if file.purged_at else utcnow().isoformat()
    certificate = certificates.issue(file.organization_id, approver, [entry])
    db.session.add(
        DispositionDecision(
            organization_id=file.organization_id,
            file_id=file.id,
            decision="destroy",
            certificate_id=certificate.id,
            decided_by_id=actor.user_id,
        )
    )
    db.session.flush()
    record(
        "disposition.destroyed",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"certificate_id": certificate.id, "versions": len(versions)},
    )
    return certificate, keys


def recent_decisions(organization_id: int, limit: int = 20) -> list[DispositionDecision]:
    return list(
        db.session.execute(
            select(DispositionDecision)
            .where(DispositionDecision.organization_id == organization_id)
            .order_by(DispositionDecision.id.desc())
            .limit(limit)
        ).scalars()
    )
