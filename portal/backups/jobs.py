"""Nightly backup jobs: a scheduled backup of every organisation, and a sampled verification."""

from __future__ import annotations

import logging

from sqlalchemy import select

from portal.audit.context import Actor
from portal.backups import retention, services, verification
from portal.backups.models import Backup
from portal.extensions import db
from portal.organizations.models import Organization
from portal.scheduler import scheduled_job

logger = logging.getLogger(__name__)


@scheduled_job("cron", hour=2, minute=30)
def scheduled_backups() -> None:
    ids = list(db.session.execute(select(Organization.id).order_by(Organization.id)).scalars())
    db.session.commit()
    for organization_id in ids:
        if retention.policy_for(organization_id).schedule != "quotidien":
            continue
        try:
            services.backup_now(Actor.system(organization_id), "planifie")
        except Exception:
            db.session.rollback()
            logger.exception("scheduled backup of organisation %s failed", organization_id)


@scheduled_job("cron", hour=4, minute=0)
def verify_sample() -> None:
    """Every finished backup: signature, parts, every object present, tonight's slice re-hashed."""
    verification.verify_nightly()


@scheduled_job("cron", hour=3, minute=30)
def prune_backups() -> None:
    """Apply each organisation's retention, then remove what no kept backup references."""
    ids = list(db.session.execute(select(Backup.organization_id).distinct()).scalars())
    for organization_id in ids:
        retention.prune(organization_id)
        db.session.commit()
    retention.collect_garbage()
