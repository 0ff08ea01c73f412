"""Billing rules: trial, plan choice, payments settled only by re-querying FeexPay, invoices.

Services take an Actor, flush and never commit. A payment turns SUCCESSFUL by one
conditional UPDATE (``WHERE status = 'PENDING'``): on PostgreSQL a concurrent settler
waits on the row and then matches nothing, on SQLite write transactions are serial,
so five simultaneous notifications make one payment, one invoice, one extension.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, select, update

from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth.models import User
from portal.billing import invoices, lifecycle
from portal.billing.changes import is_downgrade, refuse_if_paid_ahead, store_plan_quota
from portal.billing.errors import BillingError
from portal.billing.feexpay import NETWORK_COUNTRY, FeexPayClient, GatewayError, InvalidPhoneError, normalise_phone
from portal.billing.models import (
    EXPIRED,
    FAILED,
    PENDING,
    PERIODS,
    STATUS_ACTIVE,
    STATUS_READ_ONLY,
    STATUS_TRIAL,
    SUCCESSFUL,
    Payment,
    Plan,
    Subscription,
)
from portal.database import utcnow
from portal.documents.services.quota import lock_organization, quota_bytes, used_bytes
from portal.extensions import db
from portal.organizations.models import Organization

logger = logging.getLogger(__name__)
PERIOD_DAYS = {"mensuel": 30, "annuel": 365}
RECONCILE_AFTER = timedelta(minutes=10)
EXPIRE_AFTER = timedelta(hours=24)


def client() -> FeexPayClient:
    return FeexPayClient.from_config(current_app.config)


def tva_percent() -> int:
    return int(current_app.config.get("COFFRE_TVA_PERCENT", 18))


def split_amounts(amount_ht: int, percent: int | None = None) -> tuple[int, int]:
    """(TVA, TTC) for an HT amount: TTC is HT × (1 + TVA) rounded half up to the franc, TVA the difference."""
    percent = tva_percent() if percent is None else percent
    ttc = (amount_ht * (100 + percent) + 50) // 100
    return ttc - amount_ht, ttc


def plans(subscription: Subscription | None = None) -> list[Plan]:
    """The plans offered: the active ones, and the organisation's own even when deactivated."""
    offered = Plan.active.is_(True)
    if subscription is not None and subscription.plan_id is not None:
        offered = offered | (Plan.id == subscription.plan_id)
    return list(db.session.execute(select(Plan).where(offered).order_by(Plan.position)).scalars())


def smallest_plan() -> Plan | None:
    return db.session.execute(
        select(Plan).where(Plan.active.is_(True)).order_by(Plan.price_month_ht, Plan.position).limit(1)
    ).scalar_one_or_none()


def subscription_for(organization_id: int) -> Subscription:
    """The organisation's subscription, created on first use as a trial counted from the organisation's creation."""
    subscription = db.session.execute(
        select(Subscription).where(Subscription.organization_id == organization_id)
    ).scalar_one_or_none()
    if subscription is None:
        created = db.session.execute(
            select(Organization.created_at).where(Organization.id == organization_id)
        ).scalar_one()
        days = int(current_app.config.get("COFFRE_TRIAL_DAYS", 14))
        subscription = Subscription(
            organization_id=organization_id,
            status=STATUS_TRIAL,
            trial_ends_at=(created or utcnow()) + timedelta(days=days),
        )
        db.session.add(subscription)
        db.session.flush()
    return subscription


@dataclass(frozen=True)
class Usage:
    storage_bytes: int
    storage_quota_bytes: int | None
    members: int
    member_quota: int | None

    @property
    def storage_percent(self) -> int:
        return min(100, round(100 * self.storage_bytes / self.storage_quota_bytes)) if self.storage_quota_bytes else 0


def quotas(subscription: Subscription) -> tuple[int | None, int | None]:
    """(storage bytes, members) granted by the plan in force; the trial has the smallest plan's.

    None is no limit: COFFRE_TRIAL_STORAGE_MB=0, or no plan defined at all (billing unused).
    """
    plan = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    if plan is None:
        smallest = smallest_plan()
        storage_mb = int(current_app.config.get("COFFRE_TRIAL_STORAGE_MB", 1024))
        return storage_mb * 1024 * 1024 or None, smallest.member_quota if smallest else None
    return plan.storage_quota_mb * 1024 * 1024, plan.member_quota


def member_count(organization_id: int) -> int:
    return db.session.execute(
        select(func.count(User.id)).where(User.organization_id == organization_id, User.active.is_(True))
    ).scalar_one()


def usage(subscription: Subscription) -> Usage:
    _plan_storage, members = quotas(subscription)
    storage = quota_bytes(subscription.organization_id)  # what uploads are actually checked against
    return Usage(used_bytes(subscription.organization_id), storage, member_count(subscription.organization_id), members)


class MemberQuotaError(BillingError):
    pass


class SubscriptionReadOnlyError(MemberQuotaError):
    """An invitation while the subscription is read-only (a MemberQuotaError: the same 403 form answer)."""


def check_member_quota(organization_id: int) -> None:
    """Refuse one more member beyond the plan's quota; under the organisation lock, so parallel invitations queue."""
    lock_organization(organization_id)
    subscription = db.session.execute(
        select(Subscription).where(Subscription.organization_id == organization_id)
    ).scalar_one_or_none()
    if subscription is not None and subscription.status == STATUS_READ_ONLY:
        raise SubscriptionReadOnlyError(lifecycle.read_only_message(), "email")
    _storage, members = quotas(subscription or Subscription(organization_id=organization_id, status=STATUS_TRIAL))
    if members is not None and member_count(organization_id) >= members:
        raise MemberQuotaError(
            _(
                "Votre formule permet %(n)s membres et ce nombre est atteint : "
                "passez à une formule supérieure depuis la page Abonnement.",
                n=members,
            ),
            "email",
        )


# ---------------------------------------------------------------- choosing


def _plan_by_code(code: str, subscription: Subscription | None = None) -> Plan:
    """An active plan, or the organisation's own plan even if deactivated (it may renew it)."""
    plan = db.session.execute(select(Plan).where(Plan.code == code)).scalar_one_or_none()
    if plan is None or not (plan.active or (subscription is not None and plan.id == subscription.plan_id)):
        raise BillingError(_("Formule inconnue."), "plan")
    return plan


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise BillingError(_("Période inconnue : choisissez mensuel ou annuel."), "period")


def choose_plan(actor: Actor, plan_code: str, period: str) -> Subscription:
    """Select a plan: an upgrade (or any plan from the trial) waits for its payment;
    a downgrade waits for the period's end."""
    _check_period(period)
    subscription = subscription_for(actor.organization_id)
    plan = _plan_by_code(plan_code, subscription)
    refuse_if_paid_ahead(subscription)
    current = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    downgrade = is_downgrade(subscription, current, plan, utcnow())
    if downgrade:
        current_usage = usage(subscription)
        if (
            current_usage.storage_bytes > plan.storage_quota_mb * 1024 * 1024
            or current_usage.members > plan.member_quota
        ):
            raise BillingError(
                _(
                    "Votre utilisation dépasse les limites de la formule %(plan)s : "
                    "libérez de l'espace ou des places d'abord.",
                    plan=plan.name,
                ),
                "plan",
            )
    subscription.next_plan_id = plan.id
    subscription.next_period = period
    # A downgrade switches by itself at the end of the period in force (changes.apply_due).
    subscription.next_plan_at = subscription.current_period_end if downgrade else None
    db.session.flush()
    details = {"plan": plan.code, "period": period, "downgrade": downgrade}
    if downgrade:
        details["at"] = subscription.next_plan_at.isoformat()
    record(
        "subscription.changed",
        actor,
        target_type="subscription",
        target_id=subscription.id,
        target_label=plan.name,
        details=details,
    )
    return subscription


def amount_due_ht(subscription: Subscription, plan: Plan, period: str, now: datetime | None = None) -> int:
    """The HT price of ``plan`` for ``period``, less the unused part of a current, cheaper plan (an upgrade)."""
    now = now or utcnow()
    price = plan.price_ht(period)
    current = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    if (
        subscription.status == STATUS_ACTIVE
        and current is not None
        and current.id != plan.id
        and current.price_month_ht < plan.price_month_ht
        and subscription.current_period_end
        and subscription.current_period_end > now
    ):
        length = timedelta(days=PERIOD_DAYS[subscription.period])
        remaining = min(subscription.current_period_end - now, length)
        credit = current.price_ht(subscription.period) * remaining.total_seconds() // length.total_seconds()
        price = max(0, price - int(credit))
    return price


# ---------------------------------------------------------------- paying


def validate_mobile(network: str, phone: str) -> str:
    if network not in NETWORK_COUNTRY:
        raise BillingError(_("Réseau de paiement inconnu."), "network")
    try:
        return normalise_phone(phone, network)
    except InvalidPhoneError:
        raise BillingError(
            _(
                "Numéro de téléphone invalide : indiquez l'indicatif du pays suivi du numéro "
                "(par exemple 2290197000000)."
            ),
            "phone",
        ) from None


def start_payment(
    actor: Actor,
    gateway: FeexPayClient,
    *,
    plan_code: str,
    period: str,
    method: str,
    network: str | None = None,
    phone: str | None = None,
    email: str = "",
    payer_name: str = "",
    card_return_url: str = "",
) -> Payment:
    """Open (or resume) the organisation's pending payment for this plan and ask FeexPay for it.

    A pending payment that already has a FeexPay reference is returned as is: retrying never
    charges twice. One whose initiation failed (no reference) is tried again.
    """
    _check_period(period)
    plan = _plan_by_code(plan_code, subscription_for(actor.organization_id))
    if method not in ("mobile", "carte"):
        raise BillingError(_("Moyen de paiement inconnu."), "method")
    normalised = validate_mobile(network or "", phone or "") if method == "mobile" else None
    if method == "carte" and phone:
        normalised = "".join(ch for ch in phone if ch.isdigit())[:20] or None
    lock_organization(actor.organization_id)
    subscription = subscription_for(actor.organization_id)
    refuse_if_paid_ahead(subscription, plan)
    payment = db.session.execute(
        select(Payment).where(
            Payment.organization_id == actor.organization_id, Payment.plan_id == plan.id, Payment.status == PENDING
        )
    ).scalar_one_or_none()
    if payment is not None and payment.reference:
        return payment
    amount_ht = amount_due_ht(subscription, plan, period)
    tva, ttc = split_amounts(amount_ht)
    if payment is None:
        payment = Payment(organization_id=actor.organization_id, plan_id=plan.id, created_by=actor.user_id)
        db.session.add(payment)
    payment.period, payment.method = period, method
    payment.network = network if method == "mobile" else "card"
    payment.phone = normalised
    payment.amount_ht, payment.tva_amount, payment.amount_ttc = amount_ht, tva, ttc
    db.session.flush()
    try:
        if method == "mobile":
            answer = gateway.request_to_pay(
                network, ttc, normalised, f"Coffre {plan.name} {period}", f"coffre:{actor.organization_id}:{payment.id}"
            )
            payment.reference = str(answer["reference"])
        else:
            first, _sep, last = (payer_name or "Client Coffre").partition(" ")
            answer = gateway.init_card(ttc, normalised or "", email, first, last or first, card_return_url)
            payment.reference, payment.card_url = answer["reference"], answer["url"]
        payment.message = None
    except GatewayError as error:
        payment.message = str(error)[:300]
    db.session.flush()
    record(
        "payment.started",
        actor,
        target_type="payment",
        target_id=payment.id,
        target_label=plan.name,
        details={
            "amount_ttc": ttc,
            "method": method,
            "network": payment.network,
            "reference": payment.reference,
            "gateway_error": payment.message,
        },
    )
    return payment


def _anomaly(actor: Actor, payment: Payment | None, kind: str, **details: Any) -> None:
    record(
        "payment.anomaly",
        actor,
        target_type="payment",
        target_id=payment.id if payment else None,
        target_label=kind,
        details={"kind": kind, **details},
    )


def settle(gateway: FeexPayClient, payment: Payment, *, source: str) -> str:
    """Re-query FeexPay for ``payment`` and apply what it says; the only way a payment changes state.

    Returns the payment's status afterwards. Gateway faults leave it pending.
    """
    actor = Actor.system(payment.organization_id)
    if payment.status != PENDING or not payment.reference:
        return payment.status
    try:
        answer = gateway.status(payment.reference)
    except GatewayError as error:
        payment.message = str(error)[:300]
        payment.checked_at = utcnow()
        db.session.flush()
        return payment.status
    payment.checked_at = utcnow()
    if answer.reference and answer.reference != payment.reference:
        _anomaly(
            actor, payment, "reference_mismatch", asked=payment.reference, answered=answer.reference, source=source
        )
        db.session.flush()
        return payment.status
    if answer.status == "PENDING":
        db.session.flush()
        return PENDING
    if answer.status == "SUCCESSFUL" and answer.amount != payment.amount_ttc:
        _anomaly(actor, payment, "wrong_amount", expected=payment.amount_ttc, received=answer.amount, source=source)
        db.session.flush()
        return payment.status
    new_status = SUCCESSFUL if answer.status == "SUCCESSFUL" else FAILED
    now = utcnow()
    won = db.session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status == PENDING)
        .values(status=new_status, settled_at=now, checked_at=now, message=answer.reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(payment)
    if not won:
        return payment.status  # another settler got there first
    if new_status == SUCCESSFUL:
        _activate(actor, payment, now)
    else:
        record(
            "payment.failed",
            actor,
            target_type="payment",
            target_id=payment.id,
            target_label=answer.reason,
            details={"reference": payment.reference, "reason": answer.reason, "source": source},
        )
    db.session.flush()
    return payment.status


def _activate(actor: Actor, payment: Payment, now: datetime) -> None:
    subscription = db.session.execute(
        select(Subscription).where(Subscription.organization_id == payment.organization_id).with_for_update()
    ).scalar_one()
    plan = db.session.get(Plan, payment.plan_id)
    length = timedelta(days=PERIOD_DAYS[payment.period])
    current = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    if is_downgrade(subscription, current, plan, now):
        start, end = _prepay_downgrade(subscription, plan, payment.period, length)
        change = {"plan": plan.code, "at": subscription.next_plan_at.isoformat(), "paid_ahead": True}
    else:
        start, end, previous = _extend(subscription, plan, payment.period, length, now)
        change = None if previous == STATUS_ACTIVE else {"from": previous, "to": STATUS_ACTIVE}
    db.session.flush()
    record(
        "payment.succeeded",
        actor,
        target_type="payment",
        target_id=payment.id,
        target_label=plan.name,
        details={"reference": payment.reference, "amount_ttc": payment.amount_ttc},
    )
    if change is not None:
        record(
            "subscription.changed",
            actor,
            target_type="subscription",
            target_id=subscription.id,
            target_label=plan.name,
            details={**change, "period_end": end.isoformat()},
        )
    invoices.issue_for_payment(actor, payment, plan, start, end)


def _extend(
    subscription: Subscription, plan: Plan, period: str, length: timedelta, now: datetime
) -> tuple[datetime, datetime, str]:
    """Put ``plan`` in force for the paid time; (start, end, the status before)."""
    if subscription.status == STATUS_TRIAL:
        remaining = max(timedelta(0), (subscription.trial_ends_at or now) - now)
        start, end = now, now + length + remaining
    elif subscription.plan_id == plan.id and subscription.current_period_end and subscription.current_period_end > now:
        start = subscription.current_period_end
        end = start + length
        if subscription.next_plan_at is not None:
            # The current plan renewed: the next period is paid on it, so an unpaid downgrade is dropped.
            subscription.next_plan_id = subscription.next_period = subscription.next_plan_at = None
    else:
        start, end = now, now + length  # an upgrade (its credit was taken off the price) or a lapsed plan
    previous = subscription.status
    subscription.plan_id, subscription.period = plan.id, period
    subscription.status, subscription.current_period_end = STATUS_ACTIVE, end
    if subscription.next_plan_id == plan.id:
        subscription.next_plan_id = subscription.next_period = subscription.next_plan_at = None
    store_plan_quota(subscription.organization_id, plan)
    return start, end, previous


def _prepay_downgrade(
    subscription: Subscription, plan: Plan, period: str, length: timedelta
) -> tuple[datetime, datetime]:
    """A cheaper plan paid while the current one runs: the paid time starts at the current
    period's end, on that plan, and the plan in force (and its quotas) stays until then."""
    start = subscription.current_period_end
    end = start + length
    subscription.next_plan_id, subscription.next_period = plan.id, period
    # Paid again ahead: the switch date stays the first one, the paid time adds up.
    subscription.next_plan_at = subscription.next_plan_at or start
    subscription.current_period_end = end
    return start, end


def handle_notification(gateway: FeexPayClient, body: Any) -> None:
    """A FeexPay webhook: unsigned, so it only names a reference to re-query."""
    reference = body.get("reference") if isinstance(body, dict) else None
    if not isinstance(reference, str) or not 0 < len(reference) <= 80:
        _anomaly(Actor.system(None), None, "malformed_notification")
        return
    payment = db.session.execute(select(Payment).where(Payment.reference == reference)).scalar_one_or_none()
    if payment is None:
        _anomaly(Actor.system(None), None, "unknown_reference", reference=reference)
        return
    claimed = str(body.get("status") or "").upper()
    after = settle(gateway, payment, source="notification")
    forged_success = claimed in ("SUCCESSFUL", "SUCCESS") and after != SUCCESSFUL
    late_failure = claimed == FAILED and after == SUCCESSFUL
    if forged_success or late_failure:
        _anomaly(Actor.system(payment.organization_id), payment, "status_mismatch", claimed=claimed, status=after)


def reconcile(gateway: FeexPayClient, now: datetime | None = None) -> dict[str, int]:
    """Re-query every payment pending for more than 10 minutes; expire those still unanswered after 24 h."""
    now = now or utcnow()
    counts = {"checked": 0, "expired": 0}
    pending = (
        db.session.execute(
            select(Payment)
            .where(Payment.status == PENDING, Payment.created_at <= now - RECONCILE_AFTER)
            .order_by(Payment.id)
        )
        .scalars()
        .all()
    )
    for payment in pending:
        status = settle(gateway, payment, source="reconciliation") if payment.reference else PENDING
        counts["checked"] += 1
        if status == PENDING and payment.created_at <= now - EXPIRE_AFTER:
            expired = db.session.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.status == PENDING)
                .values(status=EXPIRED, settled_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if expired:
                counts["expired"] += 1
                record(
                    "payment.failed",
                    Actor.system(payment.organization_id),
                    target_type="payment",
                    target_id=payment.id,
                    target_label="EXPIRED",
                    details={"reference": payment.reference, "reason": "expired"},
                )
    db.session.flush()
    return counts


def verification_token() -> str:
    return secrets.token_urlsafe(24)
