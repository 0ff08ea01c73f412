"""Scheduled jobs of billing: reconciliation of payments FeexPay never notified."""

from __future__ import annotations

from portal.billing import services
from portal.scheduler import scheduled_job


@scheduled_job("interval", minutes=5)
def reconcile_payments_job() -> None:
    services.reconcile(services.client())
