"""Invoices: gap-free numbers under concurrent payments, the PDF's content, credit notes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading

from sqlalchemy import select

from portal.audit.context import Actor
from portal.billing import invoices, services
from portal.billing.models import Invoice, Payment
from portal.database import utcnow
from portal.extensions import db
from tests.billing.conftest import choose, pay


def _settled_payment(admin_client, plan="essentiel") -> Payment:
    choose(admin_client, plan)
    pay(admin_client, plan)
    db.session.expire_all()
    payment = db.session.execute(select(Payment).order_by(Payment.id.desc())).scalars().first()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": payment.reference})
    db.session.expire_all()
    return payment


def test_the_pdf_shows_number_amounts_and_tva_and_its_hash_is_recorded(admin_client, app, tmp_path):
    _settled_payment(admin_client, "pro")
    invoice = db.session.execute(select(Invoice)).scalar_one()
    response = admin_client.get(f"/factures/{invoice.id}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data()
    assert hashlib.sha256(body).hexdigest() == invoice.pdf_sha256
    path = tmp_path / "facture.pdf"
    path.write_bytes(body)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", " ", text.replace("\u202f", " ").replace("\u00a0", " "))
    assert f"FAC-{utcnow().year}-000001" in flat
    assert "45 000 FCFA" in flat and "8 100 FCFA" in flat and "53 100 FCFA" in flat
    assert "TVA 18 %" in flat and "Total HT" in flat and "Total TTC" in flat
    assert invoice.payment_reference in flat and "Organisation A" in flat
    assert "/factures/verifier/" in flat
    listing = admin_client.get("/factures").get_data(as_text=True)
    assert invoice.number in listing
    verify = admin_client.get(f"/factures/verifier/{invoice.verification_token}")
    assert verify.status_code == 200 and invoice.number in verify.get_data(as_text=True)


def test_a_rolled_back_success_does_not_consume_a_number(app, make_org):
    year = utcnow().year
    assert invoices.allocate_number(year) == (1, f"FAC-{year}-000001")
    db.session.rollback()
    assert invoices.allocate_number(year) == (1, f"FAC-{year}-000001")
    db.session.commit()
    assert invoices.allocate_number(year)[1] == f"FAC-{year}-000002"
    db.session.rollback()


def test_concurrent_payments_get_consecutive_numbers_without_gaps(app, make_org, make_user, login_as):
    count = 6
    references = []
    for index in range(count):
        client = login_as(make_user("admin", org=make_org(f"Client {index}")))
        choose(client)
        pay(client)
        db.session.expire_all()
        references.append(db.session.execute(select(Payment.reference).order_by(Payment.id.desc())).scalars().first())
    db.session.commit()
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def settle(reference: str) -> None:
        try:
            client = app.test_client()
            barrier.wait()
            client.post("/abonnement/feexpay/notification", json={"reference": reference})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=settle, args=(ref,)) for ref in references]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    db.session.expire_all()
    seqs = sorted(db.session.execute(select(Invoice.seq)).scalars())
    assert seqs == list(range(1, count + 1))
    numbers = set(db.session.execute(select(Invoice.number)).scalars())
    assert len(numbers) == count


def test_a_credit_note_cancels_an_invoice_without_editing_it(admin_client, app):
    _settled_payment(admin_client)
    invoice = db.session.execute(select(Invoice)).scalar_one()
    original = (invoice.amount_ttc, invoice.pdf_sha256)
    note = invoices.issue_credit_note(Actor.system(invoice.organization_id), invoice)
    db.session.commit()
    assert note.kind == "avoir" and note.amount_ttc == -invoice.amount_ttc and note.seq == invoice.seq + 1
    assert invoices.issue_credit_note(Actor.system(invoice.organization_id), invoice).id == note.id
    db.session.expire_all()
    assert (db.session.get(Invoice, invoice.id).amount_ttc, db.session.get(Invoice, invoice.id).pdf_sha256) == original


def test_ttc_is_ht_plus_tva_rounded_to_the_franc(app):
    assert services.split_amounts(45000, 18) == (8100, 53100)
    assert services.split_amounts(12345, 18) == (2222, 14567)  # 14 567.1 → 14 567
    assert services.split_amounts(1, 18) == (0, 1)
    assert sum(services.split_amounts(999, 18)[:1]) + 999 == services.split_amounts(999, 18)[1]


def test_the_credit_note_command(admin_client, app):
    _settled_payment(admin_client)
    invoice = db.session.execute(select(Invoice)).scalar_one()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["billing", "avoir", invoice.number])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    note = db.session.execute(select(Invoice).where(Invoice.kind == "avoir")).scalar_one()
    assert f"{note.number} credits {invoice.number}" in result.output and note.amount_ttc == -invoice.amount_ttc
    assert runner.invoke(args=["billing", "avoir", note.number]).exit_code == 1  # a credit note is not credited
    assert runner.invoke(args=["billing", "avoir", "FAC-1999-000001"]).exit_code == 1
