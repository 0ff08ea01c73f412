"""Thin views of the plans page for platform administrators (/plateforme/formules)."""

from __future__ import annotations

from flask import Response, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.billing import bp, invoices, plans
from portal.billing.errors import BillingError
from portal.billing.forms import ConfirmForm, PlanForm
from portal.billing.models import Plan
from portal.extensions import db
from portal.security.permissions import Permission, requires
from portal.web.context import current_actor
from portal.web.htmx import redirect_or_hx, render_page_or_fragment

# A refused field's message: WTForms' own say "Not a valid integer value" in English only.
FIELD_MESSAGES = {
    "code": _l("Le code est obligatoire : lettres minuscules, chiffres, « - » ou « _ » (40 au plus)."),
    "name": _l("Le nom est obligatoire (80 caractères au plus)."),
    "price_month_ht": _l("Le prix mensuel HT est un nombre entier de francs CFA supérieur à 0."),
    "price_year_ht": _l("Le prix annuel HT est un nombre entier de francs CFA supérieur à 0."),
    "storage_quota_mb": _l("Le quota de stockage est un nombre entier de Mo supérieur à 0."),
    "member_quota": _l("Le nombre de membres est un nombre entier supérieur à 0."),
    "backup": _l("Fréquence de sauvegarde inconnue."),
    "position": _l("L'ordre d'affichage est un nombre entier de 0 à 1000."),
    "csrf_token": _l("Jeton de sécurité invalide : rechargez la page."),
}


def _data(form: PlanForm) -> plans.PlanData:
    return plans.PlanData(
        name=form.name.data or "",
        price_month_ht=form.price_month_ht.data,
        price_year_ht=form.price_year_ht.data,
        storage_quota_mb=form.storage_quota_mb.data,
        member_quota=form.member_quota.data,
        sso=bool(form.sso.data),
        compliance=bool(form.compliance.data),
        backup=form.backup.data,
        active=bool(form.active.data),
        position=form.position.data or 0,
    )


def _form_for(plan: Plan) -> PlanForm:
    features = plan.features or {}
    return PlanForm(
        formdata=None,
        name=plan.name,
        price_month_ht=plan.price_month_ht,
        price_year_ht=plan.price_year_ht,
        storage_quota_mb=plan.storage_quota_mb,
        member_quota=plan.member_quota,
        sso=bool(features.get("sso")),
        compliance=bool(features.get("compliance")),
        backup=features.get("backup", "hebdomadaire"),
        position=plan.position,
        active=plan.active,
    )


def _list(
    form: PlanForm | None = None,
    error: str | None = None,
    field: str | None = None,
    status: int = 200,
    fragment: str = "billing/_plans.html",
    refusal: str | None = None,
):
    """The plans page; ``fragment`` is what an HTMX request swaps (the creation form alone after its 422)."""
    return render_page_or_fragment(
        "billing/plans.html",
        fragment,
        status=status,
        action=url_for("billing.plan_create"),
        plan=None,
        plans=plans.all_plans(),
        in_use={plan.id for plan in plans.all_plans() if plans.in_use(plan)},
        form=form or PlanForm(formdata=None),
        confirm_form=ConfirmForm(),
        error=error,
        error_field=field,
        refusal=refusal,
        xof=invoices.format_xof,
    )


def _edit(plan: Plan, form: PlanForm, error: str | None = None, field: str | None = None, status: int = 200):
    return render_page_or_fragment(
        "billing/plan_edit.html",
        "billing/_plan_form.html",
        status=status,
        plan=plan,
        form=form,
        error=error,
        error_field=field,
        action=url_for("billing.plan_update", plan_id=plan.id),
    )


def _first_error(form: PlanForm) -> tuple[str, str]:
    field = next(iter(form.errors), "name")
    return str(FIELD_MESSAGES.get(field, _("Champ invalide : %(field)s.", field=field))), field


@bp.get("/plateforme/formules")
@requires(Permission.PLATFORM_ADMIN)
def plans_admin() -> Response:
    return _list()


@bp.post("/plateforme/formules")
@requires(Permission.PLATFORM_ADMIN)
def plan_create() -> Response:
    form = PlanForm()
    if not form.validate_on_submit():
        status = 400 if "csrf_token" in form.errors else 422
        return _list(form, *_first_error(form), status=status, fragment="billing/_plan_form.html")
    try:
        plans.create_plan(current_actor(), form.code.data or "", _data(form))
    except BillingError as error:
        db.session.rollback()
        return _list(form, error.message, error.field, error.status, fragment="billing/_plan_form.html")
    db.session.commit()
    return redirect_or_hx(url_for("billing.plans_admin"))


@bp.get("/plateforme/formules/<int:plan_id>")
@requires(Permission.PLATFORM_ADMIN)
def plan_edit(plan_id: int) -> Response:
    plan = db.get_or_404(Plan, plan_id)
    return _edit(plan, _form_for(plan))


@bp.post("/plateforme/formules/<int:plan_id>")
@requires(Permission.PLATFORM_ADMIN)
def plan_update(plan_id: int) -> Response:
    plan = db.get_or_404(Plan, plan_id)
    form = PlanForm()
    if not form.validate_on_submit():
        return _edit(plan, form, *_first_error(form), status=400 if "csrf_token" in form.errors else 422)
    try:
        plans.update_plan(current_actor(), plan, _data(form))
    except BillingError as error:
        db.session.rollback()
        return _edit(db.get_or_404(Plan, plan_id), form, error.message, error.field, error.status)
    db.session.commit()
    return redirect_or_hx(url_for("billing.plans_admin"))


@bp.post("/plateforme/formules/<int:plan_id>/supprimer")
@requires(Permission.PLATFORM_ADMIN)
def plan_delete(plan_id: int) -> Response:
    plan = db.get_or_404(Plan, plan_id)
    if not ConfirmForm().validate_on_submit():
        return _list(refusal=str(FIELD_MESSAGES["csrf_token"]), status=400)
    try:
        plans.delete_plan(current_actor(), plan)
    except BillingError as error:
        db.session.rollback()
        return _list(refusal=error.message, status=error.status)
    db.session.commit()
    return redirect_or_hx(url_for("billing.plans_admin"))
