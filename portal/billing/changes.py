"""Scheduled plan changes: a downgrade chosen (or paid ahead) while the current period runs
takes effect at that period's end, never before.

``choose_plan`` stores the next plan with ``next_plan_at`` (the current period's end); paying
it ahead extends ``current_period_end`` from that date while the plan in force stays
(``services._prepay_downgrade``). ``apply_due`` — the hourly lifecycle job — then switches
plan, period and storage quota at ``next_plan_at``, journalled ``subscription.changed``.

It re-checks usage first, under the subscription's row lock and the organisation lock (the
uploads' quota lock, so no upload commits between the check and the smaller quota). When the
stored bytes (plus the reservations of unfinished resumable uploads) or the active members
exceed the smaller plan's quotas, nothing is switched: the organisation keeps its current
plan and quotas, the change stays pending and is retried every hour, switching at the first
run where usage fits; the admins are told once per switch date (an e-mail and a
``subscription.downgrade_postponed`` journal entry, claimed like a reminder so that two runs
or two processes tell them once). Time paid ahead for the smaller plan keeps running on the
current one meanwhile: nothing paid is lost, nothing stored is refused retroactively.

Idempotent: the switch is decided on the row read ``FOR UPDATE`` (PostgreSQL; SQLite's write
transactions are serial), so a second run finds ``next_plan_at`` cleared and does nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import select, update

from portal.audit.context import Actor
from portal.audit.services import record
from portal.billing import lifecycle
from portal.billing.errors import BillingError
from portal.billing.models import STATUS_ACTIVE, Plan, Subscription
from portal.database import utcnow
from portal.documents.services.quota import committed_bytes, lock_organization
from portal.extensions import db
from portal.organizations.models import Organization

logger = logging.getLogger(__name__)
POSTPONED_NOTICE = "bascule_refusee"


def is_downgrade(subscription: Subscription, current: Plan | None, plan: Plan, now: datetime) -> bool:
    """A cheaper plan than the one in force while its paid period runs: it waits for that period's end."""
    return (
        current is not None
        and subscription.status == STATUS_ACTIVE
        and plan.id != current.id
        and plan.price_month_ht < current.price_month_ht
        and subscription.current_period_end is not None
        and subscription.current_period_end > now
    )


def paid_ahead(subscription: Subscription) -> bool:
    """The scheduled next plan was paid for: the period in force runs past the switch date."""
    return (
        subscription.next_plan_at is not None
        and subscription.current_period_end is not None
        and subscription.current_period_end > subscription.next_plan_at
    )


def refuse_if_paid_ahead(subscription: Subscription, plan: Plan | None = None) -> None:
    """Once a downgrade is paid ahead, its time is owed on that plan: no other choice or payment
    may replace it (an upgrade would start now and drop the prepaid time)."""
    if paid_ahead(subscription) and (plan is None or plan.id != subscription.next_plan_id):
        next_plan = db.session.get(Plan, subscription.next_plan_id)
        raise BillingError(
            _(
                "La formule %(plan)s est déjà payée à partir du %(date)s : "
                "aucun autre changement n'est possible avant cette date.",
                plan=next_plan.name if next_plan else "",
                date=subscription.next_plan_at.strftime("%d/%m/%Y"),
            ),
            "plan",
            status=409,
        )


def cancel_scheduled_change(actor: Actor) -> Subscription:
    """Drop a chosen downgrade that is not paid yet: the current plan simply continues."""
    subscription = db.session.execute(
        select(Subscription).where(Subscription.organization_id == actor.organization_id).with_for_update()
    ).scalar_one_or_none()
    if subscription is None or subscription.next_plan_at is None:
        raise BillingError(_("Aucun changement de formule n'est prévu."), "plan", status=409)
    refuse_if_paid_ahead(subscription)
    plan = db.session.get(Plan, subscription.next_plan_id)
    subscription.next_plan_id = subscription.next_period = subscription.next_plan_at = None
    db.session.flush()
    record(
        "subscription.changed",
        actor,
        target_type="subscription",
        target_id=subscription.id,
        target_label=plan.name if plan else None,
        details={"cancelled": plan.code if plan else None},
    )
    return subscription


def _over_quota(subscription: Subscription, plan: Plan) -> dict | None:
    """What exceeds ``plan``'s quotas now (None when usage fits)."""
    from portal.billing.services import member_count

    stored = committed_bytes(subscription.organization_id)
    members = member_count(subscription.organization_id)
    storage_quota = plan.storage_quota_mb * 1024 * 1024
    if stored <= storage_quota and members <= plan.member_quota:
        return None
    return {
        "storage_bytes": stored,
        "storage_quota": storage_quota,
        "members": members,
        "member_quota": plan.member_quota,
    }


def store_plan_quota(organization_id: int, plan: Plan) -> None:
    """Copy ``plan``'s storage quota to the organisation row that uploads are checked against."""
    db.session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(storage_quota_bytes=plan.storage_quota_mb * 1024 * 1024)
    )


def _switch(subscription: Subscription, plan: Plan, now: datetime) -> None:
    previous = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    at = subscription.next_plan_at
    subscription.plan_id, subscription.period = plan.id, subscription.next_period or subscription.period
    subscription.next_plan_id = subscription.next_period = subscription.next_plan_at = None
    subscription.updated_at = now
    store_plan_quota(subscription.organization_id, plan)
    db.session.flush()
    record(
        "subscription.changed",
        Actor.system(subscription.organization_id),
        target_type="subscription",
        target_id=subscription.id,
        target_label=plan.name,
        details={
            "from_plan": previous.code if previous else None,
            "to_plan": plan.code,
            "period": subscription.period,
            "at": at.isoformat() if at else None,
            "period_end": subscription.current_period_end.isoformat() if subscription.current_period_end else None,
            "source": "scheduled_change",
        },
    )


def _tell_postponed(subscription: Subscription, plan: Plan, over: dict, now: datetime) -> bool:
    """Journal and mail the admins once per switch date; a mail failure undoes both (retried next run)."""
    from portal.mail import MailError, send_template

    current = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    savepoint = db.session.begin_nested()
    try:
        if lifecycle.claim_reminder(subscription, subscription.next_plan_at, POSTPONED_NOTICE, now) is None:
            savepoint.commit()
            return False
        record(
            "subscription.downgrade_postponed",
            Actor.system(subscription.organization_id),
            target_type="subscription",
            target_id=subscription.id,
            target_label=plan.name,
            details={"plan": plan.code, "at": subscription.next_plan_at.isoformat(), **over},
        )
        link = lifecycle.subscription_url()
        for admin in lifecycle.admins_of(subscription.organization_id):
            send_template(
                admin.email,
                "downgrade_postponed",
                admin.locale,
                user=admin,
                plan_name=plan.name,
                current_name=current.name if current else "",
                over=over,
                link=link,
            )
        savepoint.commit()
        return True
    except (MailError, ValueError, OSError):
        savepoint.rollback()
        logger.exception("postponed downgrade of organisation %s not told", subscription.organization_id)
        return False


def apply_due(now: datetime | None = None) -> dict[str, int]:
    """Switch every scheduled plan change whose date has come, or postpone it (see the module)."""
    now = now or utcnow()
    counts = {"switched": 0, "postponed": 0}
    due = db.session.execute(
        select(Subscription.id)
        .where(Subscription.next_plan_at.is_not(None), Subscription.next_plan_at <= now)
        .order_by(Subscription.id)
    ).scalars()
    for subscription_id in list(due):
        subscription = db.session.execute(
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if subscription.next_plan_at is None or subscription.next_plan_at > now:
            continue  # another run switched it (or it was cancelled) while this one waited
        plan = db.session.get(Plan, subscription.next_plan_id) if subscription.next_plan_id else None
        if plan is None:
            subscription.next_plan_at = None
            continue
        lock_organization(subscription.organization_id)
        over = _over_quota(subscription, plan)
        if over is None:
            _switch(subscription, plan, now)
            counts["switched"] += 1
        elif _tell_postponed(subscription, plan, over, now):
            counts["postponed"] += 1
    db.session.flush()
    return counts
