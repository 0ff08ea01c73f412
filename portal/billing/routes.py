"""Thin views: /abonnement, /factures, and FeexPay's notification endpoint."""

from __future__ import annotations

from flask import Response, abort, jsonify, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from portal.audit.models import AuditEntry
from portal.billing import bp, changes, invoices, lifecycle, services
from portal.billing.feexpay import NETWORKS
from portal.billing.forms import ChooseForm, ConfirmForm, PayForm
from portal.billing.models import PENDING, Invoice, Payment, Plan, Subscription
from portal.database import utcnow, writes_on_get
from portal.extensions import csrf, db
from portal.security.permissions import Permission, has_permission, public, requires
from portal.security.tenancy import get_scoped_or_404, scoped
from portal.web.context import current_actor
from portal.web.htmx import redirect_or_hx, render_page_or_fragment, wants_fragment

COUNTRY_NAMES = {
    "229": "Bénin",
    "228": "Togo",
    "225": "Côte d'Ivoire",
    "221": "Sénégal",
    "226": "Burkina Faso",
    "242": "Congo",
    "223": "Mali",
}


def network_choices() -> list[SelectChoice]:
    return [
        SelectChoice(network, f"{COUNTRY_NAMES[code]} · {network.replace('_', ' ').upper()}")
        for code, networks in NETWORKS.items()
        for network in networks
    ]


def _page_context(org_id: int, pay_form: PayForm | None = None, error: str | None = None) -> dict:
    subscription = services.subscription_for(org_id)
    plans = services.plans(subscription)
    plan = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    next_plan = db.session.get(Plan, subscription.next_plan_id) if subscription.next_plan_id else None
    payments = db.session.execute(scoped(Payment, org_id).order_by(Payment.id.desc()).limit(20)).scalars().all()
    if pay_form is None:
        pay_form = PayForm()
        pay_form.network.choices = network_choices()
        if next_plan:
            pay_form.plan.data, pay_form.period.data = next_plan.code, subscription.next_period
    due = None
    if next_plan:
        due_ht = services.amount_due_ht(subscription, next_plan, subscription.next_period or "mensuel")
        due = (due_ht, *services.split_amounts(due_ht))
    return {
        "subscription": subscription,
        "plan": plan,
        "next_plan": next_plan,
        "plans": plans,
        "usage": services.usage(subscription),
        "payments": payments,
        "choose_form": ChooseForm(),
        "pay_form": pay_form,
        "due": due,
        "tva_percent": services.tva_percent(),
        "xof": invoices.format_xof,
        "error": error,
        "notice": lifecycle.notice_for(subscription),
        "paid_ahead": changes.paid_ahead(subscription),
        "confirm_form": ConfirmForm(),
        "now": utcnow(),
    }


@bp.app_context_processor
def _lifecycle_banner() -> dict:
    """``billing_notice()`` for base.html: the state banner, for members who can pay (admins) only.

    A callable, so that pages without a signed-in admin (sign-in, errors) run no query.
    """

    def billing_notice():
        if not getattr(current_user, "is_authenticated", False) or not current_user.organization_id:
            return None
        if not has_permission(current_user, Permission.BILLING_MANAGE):
            return None
        if request.endpoint and request.endpoint.startswith("billing."):
            return None  # /abonnement says it in its own section
        subscription = db.session.execute(
            select(Subscription).where(Subscription.organization_id == current_user.organization_id)
        ).scalar_one_or_none()
        return lifecycle.notice_for(subscription) if subscription else None

    return {"billing_notice": billing_notice}


@bp.get("/abonnement")
@requires(Permission.BILLING_MANAGE)
def subscription_page() -> Response:
    context = _page_context(current_user.organization_id)
    db.session.commit()  # the trial row, created on first visit
    return render_page_or_fragment("billing/subscription.html", "billing/_subscription.html", **context)


@bp.post("/abonnement/choisir")
@requires(Permission.BILLING_MANAGE)
def choose() -> Response:
    form = ChooseForm()
    if not form.validate_on_submit():
        field = next(iter(form.errors), "plan")
        return _refused(_("Choix invalide : %(field)s.", field=field), field)
    try:
        services.choose_plan(current_actor(), form.plan.data, form.period.data)
    except services.BillingError as error:
        db.session.rollback()
        return _refused(error.message, error.field, error.status)
    db.session.commit()
    if wants_fragment():  # a same-page redirect would be a mere hash change: swap the section instead
        return render_page_or_fragment(
            "billing/subscription.html", "billing/_subscription.html", **_page_context(current_user.organization_id)
        )
    return redirect_or_hx(url_for("billing.subscription_page") + "#paiement")


@bp.post("/abonnement/annuler-changement")
@requires(Permission.BILLING_MANAGE)
def cancel_change() -> Response:
    """Drop a chosen downgrade not yet paid: the current plan continues."""
    if not ConfirmForm().validate_on_submit():
        return _refused(_("Jeton de sécurité invalide : rechargez la page."), None, 400)
    try:
        changes.cancel_scheduled_change(current_actor())
    except services.BillingError as error:
        db.session.rollback()
        return _refused(error.message, error.field, error.status)
    db.session.commit()
    if wants_fragment():
        return render_page_or_fragment(
            "billing/subscription.html", "billing/_subscription.html", **_page_context(current_user.organization_id)
        )
    return redirect_or_hx(url_for("billing.subscription_page"))


def _refused(message: str, field: str | None, status: int = 422) -> Response:
    context = _page_context(current_user.organization_id, error=message)
    context["error_field"] = field
    db.session.commit()
    return render_page_or_fragment("billing/subscription.html", "billing/_subscription.html", status=status, **context)


@bp.post("/abonnement/payer")
@requires(Permission.BILLING_MANAGE)
def pay() -> Response:
    form = PayForm()
    form.network.choices = network_choices()
    if not form.validate_on_submit():
        field = next(iter(form.errors), "method")
        return _refused(_("Champ invalide : %(field)s.", field=field), field)
    try:
        payment = services.start_payment(
            current_actor(),
            services.client(),
            plan_code=form.plan.data,
            period=form.period.data,
            method=form.method.data,
            network=form.network.data,
            phone=form.phone.data,
            email=current_user.email,
            payer_name=current_user.name,
            card_return_url=url_for("billing.card_return", _external=True),
        )
    except services.BillingError as error:
        db.session.rollback()
        return _refused(error.message, error.field, error.status)
    db.session.commit()
    if payment.card_url and payment.status == PENDING:
        return redirect_or_hx(payment.card_url)
    return redirect_or_hx(url_for("billing.payment_page", payment_id=payment.id))


@bp.get("/abonnement/paiements/<int:payment_id>")
@requires(Permission.BILLING_MANAGE)
@writes_on_get
def payment_page(payment_id: int) -> Response:
    """The payment's state; the fragment is polled by HTMX while pending, each poll re-querying FeexPay."""
    payment = get_scoped_or_404(Payment, payment_id)
    if payment.status == PENDING:
        services.settle(services.client(), payment, source="poll")
        db.session.commit()
    invoice = db.session.execute(
        scoped(Invoice, payment.organization_id).where(Invoice.payment_id == payment.id)
    ).scalar_one_or_none()
    plan = db.session.get(Plan, payment.plan_id)
    return render_page_or_fragment(
        "billing/payment.html",
        "billing/_payment.html",
        payment=payment,
        plan=plan,
        invoice=invoice,
        xof=invoices.format_xof,
    )


@bp.get("/abonnement/carte/retour")
@requires(Permission.BILLING_MANAGE)
@writes_on_get
def card_return() -> Response:
    """Where FeexPay's card page sends the browser back: the ``ref`` is only a lookup key."""
    reference = request.args.get("ref", "")[:80]
    payment = db.session.execute(
        scoped(Payment, current_user.organization_id).where(Payment.reference == reference)
    ).scalar_one_or_none()
    if payment is None:
        abort(404)
    return redirect_or_hx(url_for("billing.payment_page", payment_id=payment.id))


@bp.post("/abonnement/feexpay/notification")
@public
@csrf.exempt
def notification() -> Response:
    """FeexPay's webhook. Unsigned: it only triggers a re-query, and its answer says nothing."""
    body = request.get_json(silent=True)
    if body is None and request.form:
        body = request.form.to_dict()
    services.handle_notification(services.client(), body or {})
    db.session.commit()
    return jsonify({"received": True})


@bp.get("/factures")
@requires(Permission.BILLING_MANAGE)
def invoice_list() -> Response:
    rows = db.session.execute(scoped(Invoice, current_user.organization_id).order_by(Invoice.id.desc())).scalars().all()
    return render_page_or_fragment(
        "billing/invoices.html", "billing/_invoices.html", invoices=rows, xof=invoices.format_xof
    )


@bp.get("/factures/<int:invoice_id>/pdf")
@requires(Permission.BILLING_MANAGE)
def invoice_pdf(invoice_id: int) -> Response:
    invoice = get_scoped_or_404(Invoice, invoice_id)
    return pdf_response(invoice)


def pdf_response(invoice: Invoice) -> Response:
    response = Response(invoice.pdf or b"", mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
    response.headers["X-Content-SHA256"] = invoice.pdf_sha256 or ""
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.get("/factures/verifier/<token>")
@public
def verify_invoice(token: str) -> Response:
    """The QR code's target: confirms an invoice exists and shows its number and total, nothing else."""
    invoice = db.session.execute(select(Invoice).where(Invoice.verification_token == token[:64])).scalar_one_or_none()
    if invoice is None:
        abort(404)
    return Response(render_template("billing/verify.html", invoice=invoice, xof=invoices.format_xof))


@bp.get("/abonnement/anomalies")
@requires(Permission.PLATFORM_ADMIN)
def anomalies() -> Response:
    entries = (
        db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "payment.anomaly").order_by(AuditEntry.id.desc()).limit(200)
        )
        .scalars()
        .all()
    )
    return render_page_or_fragment("billing/anomalies.html", "billing/_anomalies.html", entries=entries)
