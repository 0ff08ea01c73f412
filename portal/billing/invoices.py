"""Invoices and credit notes: numbers allocated in the success transaction, PDF stored once.

The per-year counter is advanced by ``UPDATE … RETURNING`` inside the transaction that
records the payment's success: it rolls back with it, so numbers have no gap, and the row
lock queues concurrent issuers so no number is given twice.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from datetime import datetime

import segno
from flask import current_app, render_template, url_for
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.audit.context import Actor
from portal.audit.services import record
from portal.billing.models import Invoice, InvoiceCounter, Payment, Plan
from portal.extensions import db
from portal.organizations.models import Organization

METHOD_LABELS = {"card": "Carte bancaire"}


def allocate_number(year: int) -> tuple[int, str]:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(insert(InvoiceCounter).values(year=year, last_seq=0).on_conflict_do_nothing())
    seq = db.session.execute(
        update(InvoiceCounter)
        .where(InvoiceCounter.year == year)
        .values(last_seq=InvoiceCounter.last_seq + 1)
        .returning(InvoiceCounter.last_seq)
    ).scalar_one()
    return seq, f"FAC-{year}-{seq:06d}"


def format_xof(amount: int) -> str:
    """French grouping with a narrow no-break space: 12 345 FCFA."""
    return f"{amount:,}".replace(",", "\u202f") + "\u00a0FCFA"


def verification_url(invoice: Invoice) -> str:
    base = current_app.config.get("COFFRE_BASE_URL")
    try:
        path = url_for("billing.verify_invoice", token=invoice.verification_token)
        external = url_for("billing.verify_invoice", token=invoice.verification_token, _external=True)
    except RuntimeError:  # a job with neither a request nor SERVER_NAME
        path = external = f"/factures/verifier/{invoice.verification_token}"
    return (base.rstrip("/") + path) if base else external


def render_pdf(invoice: Invoice) -> bytes:
    from weasyprint import HTML

    qr = segno.make(verification_url(invoice), error="m")
    buffer = io.BytesIO()
    qr.save(buffer, kind="svg", scale=3, border=1)
    svg = buffer.getvalue().decode()
    issuer = {
        "name": current_app.config.get("COFFRE_ISSUER_NAME", "Coffre SAS"),
        "address": current_app.config.get("COFFRE_ISSUER_ADDRESS", "Cotonou, Bénin"),
        "ifu": current_app.config.get("COFFRE_ISSUER_IFU", ""),
        "rccm": current_app.config.get("COFFRE_ISSUER_RCCM", ""),
    }
    html = render_template(
        "billing/invoice_pdf.html",
        invoice=invoice,
        issuer=issuer,
        qr_svg=svg,
        xof=format_xof,
        url=verification_url(invoice),
    )
    # No base_url and a fetcher that refuses everything: nothing in an invoice reaches the network.
    return HTML(string=html, url_fetcher=_no_fetch).write_pdf()


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"invoice rendering fetches nothing ({url[:40]})")


def _store(invoice: Invoice) -> None:
    invoice.pdf = render_pdf(invoice)
    invoice.pdf_sha256 = hashlib.sha256(invoice.pdf).hexdigest()


def issue_for_payment(actor: Actor, payment: Payment, plan: Plan, start: datetime, end: datetime) -> Invoice:
    year = payment.settled_at.year if payment.settled_at else start.year
    seq, number = allocate_number(year)
    organization = db.session.get(Organization, payment.organization_id)
    invoice = Invoice(
        organization_id=payment.organization_id,
        number=number,
        year=year,
        seq=seq,
        kind="facture",
        payment_id=payment.id,
        plan_name=plan.name,
        period=payment.period,
        period_start=start,
        period_end=end,
        customer_name=organization.name,
        amount_ht=payment.amount_ht,
        tva_rate_bp=int(current_app.config.get("COFFRE_TVA_PERCENT", 18)) * 100,
        tva_amount=payment.tva_amount,
        amount_ttc=payment.amount_ttc,
        payment_method=METHOD_LABELS.get(payment.network or "", f"Mobile money {(payment.network or '').upper()}"),
        payment_reference=payment.reference,
        verification_token=secrets.token_urlsafe(24),
    )
    db.session.add(invoice)
    db.session.flush()
    _store(invoice)
    db.session.flush()
    record(
        "invoice.issued",
        actor,
        target_type="invoice",
        target_id=invoice.id,
        target_label=number,
        details={"amount_ttc": invoice.amount_ttc, "sha256": invoice.pdf_sha256},
    )
    return invoice


def issue_credit_note(actor: Actor, invoice: Invoice) -> Invoice:
    """Cancel ``invoice`` by an avoir of the opposite amounts; the invoice itself is never edited."""
    existing = db.session.execute(select(Invoice).where(Invoice.credited_invoice_id == invoice.id)).scalar_one_or_none()
    if existing is not None:
        return existing
    from portal.database import utcnow

    year = utcnow().year
    seq, number = allocate_number(year)
    note = Invoice(
        organization_id=invoice.organization_id,
        number=number,
        year=year,
        seq=seq,
        kind="avoir",
        credited_invoice_id=invoice.id,
        plan_name=invoice.plan_name,
        period=invoice.period,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        customer_name=invoice.customer_name,
        amount_ht=-invoice.amount_ht,
        tva_rate_bp=invoice.tva_rate_bp,
        tva_amount=-invoice.tva_amount,
        amount_ttc=-invoice.amount_ttc,
        payment_method=invoice.payment_method,
        payment_reference=invoice.payment_reference,
        verification_token=secrets.token_urlsafe(24),
    )
    db.session.add(note)
    db.session.flush()
    _store(note)
    record(
        "credit_note.issued",
        actor,
        target_type="invoice",
        target_id=note.id,
        target_label=number,
        details={"credits": invoice.number, "amount_ttc": note.amount_ttc},
    )
    return note
