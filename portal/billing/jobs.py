"""Scheduled jobs of billing: reconciliation of payments FeexPay never notified, and the
subscription lifecycle (scheduled downgrades, lapses, read-only, reminder e-mails)."""

from __future__ import annotations

from portal.billing import changes, lifecycle, services
from portal.scheduler import scheduled_job


@scheduled_job("interval", minutes=5)
def reconcile_payments_job() -> None:
    services.reconcile(services.client())


# Hourly: a period ending at 14:05 turns unpaid by 15:00; reminders are once-only whatever the rate.
@scheduled_job("interval", hours=1)
def subscription_lifecycle_job() -> None:
    # Downgrades first: a plan switched at its period's end then lapses (unpaid) on the new plan.
    changes.apply_due()
    lifecycle.advance()
