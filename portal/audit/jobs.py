"""Periodic anchoring of chain heads outside the journal table."""

from __future__ import annotations

import logging

from portal.audit.verification import checkpoint_advanced_chains
from portal.scheduler import scheduled_job

logger = logging.getLogger(__name__)


@scheduled_job("interval", minutes=15)
def checkpoint_journal_chains() -> None:
    run = checkpoint_advanced_chains()
    if run.written:
        logger.info("journal: %d chain checkpoint(s) written", run.written)
