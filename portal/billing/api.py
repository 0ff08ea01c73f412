"""The desktop app's billing endpoints on /api/v1 (bearer tokens, problem+json)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask_login import current_user

from portal.api import bp as api_bp
from portal.billing import services
from portal.billing.models import Invoice, Plan
from portal.billing.routes import pdf_response
from portal.extensions import db
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404, scoped


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def invoice_body(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "kind": invoice.kind,
        "issued_at": _iso(invoice.issued_at),
        "plan": invoice.plan_name,
        "period_start": _iso(invoice.period_start),
        "period_end": _iso(invoice.period_end),
        "amount_ht": invoice.amount_ht,
        "tva_amount": invoice.tva_amount,
        "amount_ttc": invoice.amount_ttc,
        "currency": "XOF",
        "sha256": invoice.pdf_sha256,
    }


@api_bp.get("/abonnement")
@requires(Permission.BILLING_MANAGE)
def api_subscription() -> Response:
    subscription = services.subscription_for(current_user.organization_id)
    plan = db.session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    usage = services.usage(subscription)
    db.session.commit()  # the trial row, created on first use
    return jsonify(
        {
            "plan": plan.code if plan else None,
            "plan_name": plan.name if plan else None,
            "period": subscription.period if plan else None,
            "status": subscription.status,
            "trial_ends_at": _iso(subscription.trial_ends_at),
            "period_end": _iso(subscription.current_period_end or subscription.trial_ends_at),
            "usage": {"storage_bytes": usage.storage_bytes, "members": usage.members},
            "quotas": {"storage_bytes": usage.storage_quota_bytes, "members": usage.member_quota},
        }
    )


@api_bp.get("/factures")
@requires(Permission.BILLING_MANAGE)
def api_invoices() -> Response:
    rows = db.session.execute(scoped(Invoice, current_user.organization_id).order_by(Invoice.id.desc())).scalars()
    return jsonify({"items": [invoice_body(invoice) for invoice in rows]})


@api_bp.get("/factures/<int:invoice_id>/pdf")
@requires(Permission.BILLING_MANAGE)
def api_invoice_pdf(invoice_id: int) -> Response:
    return pdf_response(get_scoped_or_404(Invoice, invoice_id))
