"""``flask billing lifecycle`` (one pass of the hourly job) and ``flask billing avoir`` (a credit note).

Corrections of an invoice are credit notes, never edits; issuing one is an operator's act
(the platform is the issuer), hence a command rather than a page for the customer.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from portal.audit.context import Actor
from portal.billing import changes, invoices, lifecycle
from portal.billing.models import Invoice
from portal.database import write_transaction
from portal.extensions import db

billing_cli = AppGroup("billing", help="Subscriptions and invoices.")


@billing_cli.command("lifecycle")
def lifecycle_command() -> None:
    """Run the subscription lifecycle now (scheduled downgrades, lapses, read-only, reminder
    e-mails), as the hourly job does."""
    with write_transaction():
        counts = changes.apply_due() | lifecycle.advance()
        db.session.commit()
    click.echo(", ".join(f"{key}: {value}" for key, value in counts.items()))


@billing_cli.command("avoir")
@click.argument("number")
def credit_note_command(number: str) -> None:
    """Cancel invoice NUMBER (FAC-YYYY-NNNNNN) by a credit note of the opposite amounts."""
    invoice = db.session.execute(select(Invoice).where(Invoice.number == number)).scalar_one_or_none()
    if invoice is None or invoice.kind != "facture":
        raise click.ClickException(f"no invoice numbered {number}")
    note = invoices.issue_credit_note(Actor.system(invoice.organization_id), invoice)
    db.session.commit()
    click.echo(f"{note.number} credits {invoice.number} ({note.amount_ttc} XOF TTC)")


def init_app(app: Flask) -> None:
    app.cli.add_command(billing_cli)
