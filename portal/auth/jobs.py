"""Scheduled jobs of the accounts feature."""

from __future__ import annotations

import logging

from portal.auth import housekeeping
from portal.extensions import db
from portal.scheduler import scheduled_job

logger = logging.getLogger(__name__)


@scheduled_job("cron", hour=3, minute=10)
def sweep_expired_bookkeeping() -> None:
    swept = housekeeping.sweep()
    db.session.commit()
    if swept.total:
        logger.info("housekeeping: %s", swept)
