"""Plans edited by platform administrators: create, change, deactivate, delete when unused.

Plans are the platform's, not an organisation's: their changes go to the platform's journal
chain (as key operations do), with the administrator as actor. What a change may not touch:

- prices: issued invoices hold their own amounts, and a pending payment keeps the amount it
  asked FeexPay for (settlement compares the answer with ``paiements.amount_ttc``), so a new
  price only applies to payments started afterwards;
- storage quota: copied to ``organisations.storage_quota_bytes`` of every organisation whose
  plan in force it is, in the same transaction (uploads are checked against that column);
  the member quota is read from the plan at each invitation, so it applies at once;
- deactivating hides the plan from the choice on /abonnement; organisations on it keep it
  (and may renew it); a plan that any subscription or payment references cannot be deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import or_, select, update

from portal.audit.context import Actor
from portal.audit.services import record
from portal.billing.errors import BillingError
from portal.billing.models import Payment, Plan, Subscription
from portal.extensions import db
from portal.organizations.models import Organization

BACKUP_FREQUENCIES = ("hebdomadaire", "quotidienne", "horaire")
CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
# What ``plan.changed`` compares (the features dict is compared key by key).
FIELDS = ("name", "price_month_ht", "price_year_ht", "storage_quota_mb", "member_quota", "position", "active")
MAX_PRICE = 2_000_000_000  # the column is a 32-bit integer; TTC is computed in Python
MAX_QUOTA_MB = 1 << 30


@dataclass(frozen=True)
class PlanData:
    """A plan's editable values, already parsed by the form."""

    name: str
    price_month_ht: int
    price_year_ht: int
    storage_quota_mb: int
    member_quota: int
    sso: bool
    compliance: bool
    backup: str
    active: bool
    position: int = 0

    def features(self) -> dict:
        return {"sso": self.sso, "compliance": self.compliance, "backup": self.backup}

    def columns(self) -> dict:
        """The plan's columns named in ``FIELDS``, as stored (the name stripped)."""
        values = {field: getattr(self, field) for field in FIELDS}
        values["name"] = self.name.strip()
        return values


def platform_actor(actor: Actor) -> Actor:
    """The administrator acting on the platform's chain rather than their organisation's."""
    return Actor(organization_id=None, user_id=actor.user_id, ip=actor.ip, user_agent=actor.user_agent)


def all_plans() -> list[Plan]:
    return list(db.session.execute(select(Plan).order_by(Plan.position, Plan.id)).scalars())


def _validate(data: PlanData) -> None:
    """Rules the form cannot express alone; each error names its field (422)."""
    if not data.name.strip() or len(data.name) > 80:
        raise BillingError(_("Le nom est obligatoire (80 caractères au plus)."), "name")
    for field, value in (("price_month_ht", data.price_month_ht), ("price_year_ht", data.price_year_ht)):
        if not 0 < value <= MAX_PRICE:
            raise BillingError(_("Les prix sont des nombres entiers de francs CFA supérieurs à 0."), field)
    if not 0 < data.storage_quota_mb <= MAX_QUOTA_MB:
        raise BillingError(_("Le quota de stockage est un nombre entier de Mo supérieur à 0."), "storage_quota_mb")
    if not 0 < data.member_quota <= 1_000_000:
        raise BillingError(_("Le nombre de membres est un nombre entier supérieur à 0."), "member_quota")
    if data.backup not in BACKUP_FREQUENCIES:
        raise BillingError(_("Fréquence de sauvegarde inconnue."), "backup")


def create_plan(actor: Actor, code: str, data: PlanData) -> Plan:
    code = code.strip().lower()
    if not CODE_PATTERN.fullmatch(code):
        raise BillingError(
            _("Le code est fait de lettres minuscules, de chiffres, de « - » ou de « _ » (40 au plus)."), "code"
        )
    _validate(data)
    if db.session.execute(select(Plan.id).where(Plan.code == code)).first() is not None:
        raise BillingError(_("Une formule porte déjà le code « %(code)s ».", code=code), "code")
    plan = Plan(code=code, features=data.features(), **data.columns())
    db.session.add(plan)
    db.session.flush()
    record(
        "plan.created",
        platform_actor(actor),
        target_type="plan",
        target_id=plan.id,
        target_label=plan.name,
        details={"code": code, **{field: getattr(plan, field) for field in FIELDS}, "features": plan.features},
    )
    return plan


def update_plan(actor: Actor, plan: Plan, data: PlanData) -> dict:
    """Apply ``data``; returns the changes journalled (empty: nothing changed, nothing journalled)."""
    _validate(data)
    new = data.columns()
    changed = {field: [getattr(plan, field), value] for field, value in new.items() if getattr(plan, field) != value}
    old_features = dict(plan.features or {})
    features = data.features()
    for key, value in features.items():
        if old_features.get(key) != value:
            changed[f"features.{key}"] = [old_features.get(key), value]
    if not changed:
        return {}
    for field, value in new.items():
        setattr(plan, field, value)
    plan.features = {**old_features, **features}
    details: dict = {"code": plan.code, "changes": changed}
    if "storage_quota_mb" in changed:
        subscribed = select(Subscription.organization_id).where(Subscription.plan_id == plan.id)
        details["organisations_updated"] = db.session.execute(
            update(Organization)
            .where(Organization.id.in_(subscribed))
            .values(storage_quota_bytes=data.storage_quota_mb * 1024 * 1024)
            .execution_options(synchronize_session=False)
        ).rowcount
    db.session.flush()
    record(
        "plan.changed",
        platform_actor(actor),
        target_type="plan",
        target_id=plan.id,
        target_label=plan.name,
        details=details,
    )
    return changed


def in_use(plan: Plan) -> bool:
    """Referenced by a subscription (in force or chosen) or a payment: then it can only be deactivated."""
    subscribed = db.session.execute(
        select(Subscription.id)
        .where(or_(Subscription.plan_id == plan.id, Subscription.next_plan_id == plan.id))
        .limit(1)
    ).first()
    paid = db.session.execute(select(Payment.id).where(Payment.plan_id == plan.id).limit(1)).first()
    return subscribed is not None or paid is not None


def delete_plan(actor: Actor, plan: Plan) -> None:
    # Locked first: a subscription choosing it meanwhile waits, then its foreign key fails cleanly.
    db.session.execute(select(Plan.id).where(Plan.id == plan.id).with_for_update())
    if in_use(plan):
        raise BillingError(
            _(
                "La formule %(plan)s est utilisée : elle ne peut pas être supprimée, seulement désactivée.",
                plan=plan.name,
            ),
            "active",
            status=409,
        )
    plan_id, code, name = plan.id, plan.code, plan.name
    db.session.delete(plan)
    db.session.flush()
    record(
        "plan.deleted",
        platform_actor(actor),
        target_type="plan",
        target_id=plan_id,
        target_label=name,
        details={"code": code},
    )
