"""The subscription lifecycle: essai → active → impayee → lecture_seule, never deleted.

``advance(now)`` is the scheduler's job (``portal.billing.jobs``); tests call it with a
moved clock. The end date of a subscription is the trial's end (essai) or the paid
period's end (active). From that moment it is ``impayee`` for a grace of 7 days, then
``lecture_seule``: members still read, download and export; uploads and invitations are
refused (``documents.services.quota.upload_limits``, ``services.check_member_quota``).
Paying reactivates it (``services._activate``). Billing never deletes an organisation or
its files.

Every transition is one conditional UPDATE (``WHERE status = <from>``), journalled as
``subscription.changed`` only by the run whose UPDATE matched. Reminder e-mails go to the
organisation's admins 7, 3 and 1 days before the end and on the day it lapses, plus one
when it turns read-only; each is sent once per (subscription, end date, kind): the row of
``rappels_abonnement`` is inserted with ON CONFLICT DO NOTHING before the mail leaves, so
another run or another process inserts nothing and sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, url_for
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth.models import User
from portal.billing.models import (
    STATUS_ACTIVE,
    STATUS_READ_ONLY,
    STATUS_TRIAL,
    STATUS_UNPAID,
    Plan,
    Subscription,
    SubscriptionReminder,
)
from portal.database import utcnow
from portal.extensions import db
from portal.security.permissions import Role

logger = logging.getLogger(__name__)

GRACE = timedelta(days=7)
# (days before the end, kind): the latest one due is the one sent, so a job that was down
# for a week sends today's reminder rather than a burst of stale ones.
REMINDERS = ((7, "j7"), (3, "j3"), (1, "j1"), (0, "j0"))
READ_ONLY_NOTICE = "lecture_seule"


def read_only_message() -> str:
    return _(
        "L'abonnement de votre organisation n'est pas réglé : elle est en lecture seule. "
        "La consultation, les téléchargements et les exports restent possibles ; les envois de fichiers "
        "et les invitations reprendront dès le paiement, depuis la page Abonnement (/abonnement)."
    )


def end_of(subscription: Subscription) -> datetime | None:
    """When the trial or the paid period ends (the start of the grace)."""
    if subscription.status == STATUS_TRIAL or subscription.plan_id is None:
        return subscription.trial_ends_at
    return subscription.current_period_end


def read_only_from(subscription: Subscription) -> datetime | None:
    end = end_of(subscription)
    return end + GRACE if end else None


@dataclass(frozen=True)
class Notice:
    """What the admin banner and /abonnement say about the state, or None when nothing is due."""

    status: str
    end: datetime | None
    read_only_from: datetime | None
    days_left: int | None


def notice_for(subscription: Subscription, now: datetime | None = None) -> Notice | None:
    now = now or utcnow()
    end = end_of(subscription)
    if subscription.status in (STATUS_UNPAID, STATUS_READ_ONLY):
        return Notice(subscription.status, end, read_only_from(subscription), None)
    if end is not None and end - now <= timedelta(days=REMINDERS[0][0]):
        return Notice(subscription.status, end, read_only_from(subscription), max(0, (end - now).days))
    return None


# ---------------------------------------------------------------- the job


def _transition(subscription: Subscription, to: str, now: datetime) -> bool:
    """Move ``subscription`` from its current status to ``to`` unless a concurrent run (or a
    payment) changed it first; journal the move once."""
    previous = subscription.status
    moved = db.session.execute(
        update(Subscription)
        .where(Subscription.id == subscription.id, Subscription.status == previous)
        .values(status=to, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(subscription)
    if not moved:
        return False
    plan = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    end = end_of(subscription)
    record(
        "subscription.changed",
        Actor.system(subscription.organization_id),
        target_type="subscription",
        target_id=subscription.id,
        target_label=plan.name if plan else STATUS_TRIAL,
        details={"from": previous, "to": to, "period_end": end.isoformat() if end else None, "source": "lifecycle"},
    )
    return True


def claim_reminder(subscription: Subscription, end: datetime, kind: str, now: datetime) -> int | None:
    """Insert the reminder's row; its id, or None when some run already sent that reminder."""
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(SubscriptionReminder)
        .values(
            organization_id=subscription.organization_id,
            subscription_id=subscription.id,
            period_end=end,
            kind=kind,
            recipients=0,
            sent_at=now,
        )
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_end", "kind"])
        .returning(SubscriptionReminder.id)
    )
    return db.session.execute(statement).scalar_one_or_none()


def subscription_url() -> str:
    """The link of the mails. ``mail.absolute_url`` needs a request (or SERVER_NAME) for
    url_for; the job has neither, so the path is built in a throwaway request context and
    joined to COFFRE_BASE_URL (a bare path in development without it)."""
    with current_app.test_request_context("/"):
        path = url_for("billing.subscription_page")
    base = current_app.config.get("COFFRE_BASE_URL")
    return base.rstrip("/") + path if base else path


def admins_of(organization_id: int) -> list[User]:
    """The organisation's active admins: who billing mails."""
    return list(
        db.session.execute(
            select(User)
            .where(User.organization_id == organization_id, User.active.is_(True), User.role == Role.ADMIN.value)
            .order_by(User.id)
        ).scalars()
    )


def _send_reminder(subscription: Subscription, kind: str, end: datetime, now: datetime) -> bool:
    """Claim and send one reminder to every active admin, in a savepoint: a mail failure undoes
    the claim, so the next run tries again."""
    from portal.mail import MailError, send_template

    admins = admins_of(subscription.organization_id)
    if not admins:
        return False
    plan = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    savepoint = db.session.begin_nested()
    try:
        reminder_id = claim_reminder(subscription, end, kind, now)
        if reminder_id is None:
            savepoint.commit()
            return False
        link = subscription_url()
        for admin in admins:
            send_template(
                admin.email,
                "subscription_reminder",
                admin.locale,
                user=admin,
                kind=kind,
                days=next((days for days, name in REMINDERS if name == kind), 0),
                end=end,
                read_only_from=end + GRACE,
                plan_name=plan.name if plan else None,
                trial=subscription.plan_id is None,
                link=link,
            )
        db.session.execute(
            update(SubscriptionReminder).where(SubscriptionReminder.id == reminder_id).values(recipients=len(admins))
        )
        record(
            "subscription.reminder_sent",
            Actor.system(subscription.organization_id),
            target_type="subscription",
            target_id=subscription.id,
            target_label=kind,
            details={"kind": kind, "period_end": end.isoformat(), "recipients": len(admins)},
        )
        savepoint.commit()
        return True
    except (MailError, ValueError, OSError):
        savepoint.rollback()
        logger.exception("subscription reminder %s of organisation %s not sent", kind, subscription.organization_id)
        return False


def _due_reminder(end: datetime, now: datetime) -> str | None:
    due = None
    for days, kind in REMINDERS:
        if now >= end - timedelta(days=days):
            due = kind
    return due


def advance(now: datetime | None = None) -> dict[str, int]:
    """One pass over every subscription: transitions, then the reminder due today."""
    now = now or utcnow()
    counts = {"impayee": 0, "lecture_seule": 0, "reminders": 0}
    subscriptions = (
        db.session.execute(
            select(Subscription)
            .where(Subscription.status.in_((STATUS_TRIAL, STATUS_ACTIVE, STATUS_UNPAID, STATUS_READ_ONLY)))
            .order_by(Subscription.id)
        )
        .scalars()
        .all()
    )
    for subscription in subscriptions:
        end = end_of(subscription)
        if end is None:
            continue
        lapsed = subscription.status in (STATUS_TRIAL, STATUS_ACTIVE) and now >= end
        if lapsed and _transition(subscription, STATUS_UNPAID, now):
            counts["impayee"] += 1
        graceless = subscription.status == STATUS_UNPAID and now >= end + GRACE
        if graceless and _transition(subscription, STATUS_READ_ONLY, now):
            counts["lecture_seule"] += 1
        # A read-only subscription keeps being visited so that a notice whose mail failed is retried.
        kind = READ_ONLY_NOTICE if subscription.status == STATUS_READ_ONLY else _due_reminder(end, now)
        if kind and _send_reminder(subscription, kind, end, now):
            counts["reminders"] += 1
    db.session.flush()
    if any(counts.values()):
        current_app.logger.info("subscription lifecycle: %s", counts)
    return counts
