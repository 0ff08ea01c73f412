"""Choosing, paying and settling against the FeexPay simulator (a real HTTP server)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from portal.audit.models import AuditEntry
from portal.billing import services
from portal.billing.models import Invoice, Payment, Subscription
from portal.billing.simulator import API_KEY
from portal.database import utcnow
from portal.extensions import db
from tests.billing.conftest import choose, pay


def _journal(action: str) -> list[AuditEntry]:
    return list(db.session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


def _payment() -> Payment:
    db.session.expire_all()
    return db.session.execute(select(Payment).order_by(Payment.id.desc())).scalars().first()


def _notify(client, reference: str, status: str = "SUCCESSFUL", amount: int | None = None):
    return client.post(
        "/abonnement/feexpay/notification", json={"reference": reference, "status": status, "amount": amount}
    )


def test_simulator_speaks_the_protocol(simulator):
    base = simulator.base_url
    assert httpx.post(f"{base}/api/transactions/public/requesttopay/mtn", json={"shop": "x"}).status_code == 401
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    body = {"shop": simulator.shop, "amount": 1000, "phoneNumber": "2290197123456"}
    unknown = httpx.post(f"{base}/api/transactions/public/requesttopay/nope", json=body, headers=bearer)
    assert unknown.status_code == 404 and "channel not configured" in unknown.json()["message"]
    started = httpx.post(f"{base}/api/transactions/public/requesttopay/mtn", json=body, headers=bearer).json()
    assert started["status"] == "PENDING" and re.fullmatch(r"[0-9a-f-]{36}", started["reference"])
    status = httpx.get(f"{base}/api/transactions/public/single/status/{started['reference']}", headers=bearer).json()
    assert status == {**status, "status": "SUCCESSFUL", "amount": 1000}
    assert httpx.get(f"{base}/api/transactions/public/single/status/inconnue", headers=bearer).status_code == 404


def test_trial_is_created_with_the_smallest_quota(admin_client, org, app):
    page = admin_client.get("/abonnement")
    assert page.status_code == 200
    subscription = db.session.execute(select(Subscription)).scalar_one()
    assert subscription.status == "essai"
    assert subscription.trial_ends_at - org.created_at == timedelta(days=14)
    assert "Essai gratuit" in page.get_data(as_text=True)


def test_paying_by_mobile_money_activates_with_the_trial_days_and_issues_one_invoice(admin_client, app, org):
    assert choose(admin_client, "pro", "mensuel").status_code == 303
    response = pay(admin_client, "pro", phone="97123456")  # the old 8-digit Benin form is normalised
    assert response.status_code == 303
    payment = _payment()
    assert payment.phone == "2290197123456"
    # 45 000 HT + 18 % = 53 100 TTC, the amount asked from FeexPay.
    assert (payment.amount_ht, payment.tva_amount, payment.amount_ttc) == (45000, 8100, 53100)
    assert payment.status == "PENDING" and payment.reference
    assert _notify(admin_client, payment.reference).get_json() == {"received": True}
    payment = _payment()
    assert payment.status == "SUCCESSFUL"
    subscription = db.session.execute(select(Subscription)).scalar_one()
    assert subscription.status == "active"
    trial_left = (org.created_at + timedelta(days=14)) - payment.settled_at
    assert abs(subscription.current_period_end - (payment.settled_at + timedelta(days=30) + trial_left)) < timedelta(
        seconds=5
    )
    invoice = db.session.execute(select(Invoice)).scalar_one()
    assert invoice.number == f"FAC-{utcnow().year}-000001"
    assert (invoice.amount_ht + invoice.tva_amount, invoice.amount_ttc) == (53100, 53100)
    assert [e.action for e in _journal("payment.succeeded")] == ["payment.succeeded"]
    assert len(_journal("invoice.issued")) == 1 and len(_journal("payment.started")) == 1
    page = admin_client.get(f"/abonnement/paiements/{payment.id}").get_data(as_text=True)
    assert invoice.number in page


def test_a_forged_notification_activates_nothing(admin_client, app, simulator):
    choose(admin_client)
    pay(admin_client, phone="2290197999999")  # …9999: the simulator keeps it pending
    payment = _payment()
    assert _notify(admin_client, payment.reference, "SUCCESSFUL", payment.amount_ttc).status_code == 200
    assert _payment().status == "PENDING"
    assert db.session.execute(select(func.count(Invoice.id))).scalar_one() == 0
    anomalies = _journal("payment.anomaly")
    assert [a.details["kind"] for a in anomalies] == ["status_mismatch"]
    assert anomalies[0].organization_id == payment.organization_id


def test_a_wrong_amount_is_refused_and_journalled(admin_client, app, simulator):
    choose(admin_client)
    pay(admin_client, phone="2290197999999")
    payment = _payment()
    simulator.set_status(payment.reference, "SUCCESSFUL", amount=100)
    _notify(admin_client, payment.reference)
    assert _payment().status == "PENDING"
    assert "wrong_amount" in [a.details["kind"] for a in _journal("payment.anomaly")]
    assert db.session.execute(select(Subscription.status)).scalar_one() == "essai"


def test_an_unknown_reference_or_garbage_answers_200_and_is_journalled(client, app):
    assert client.post("/abonnement/feexpay/notification", json={"reference": "not-ours"}).get_json() == {
        "received": True
    }
    response = client.post("/abonnement/feexpay/notification", data=b"\x00garbage", content_type="application/json")
    assert response.status_code == 200 and response.get_json() == {"received": True}
    kinds = [a.details["kind"] for a in _journal("payment.anomaly")]
    assert kinds == ["unknown_reference", "malformed_notification"]


def test_failed_after_successful_never_downgrades(admin_client, app, simulator):
    choose(admin_client)
    pay(admin_client)
    payment = _payment()
    _notify(admin_client, payment.reference)
    assert _payment().status == "SUCCESSFUL"
    simulator.set_status(payment.reference, "FAILED")
    _notify(admin_client, payment.reference, "FAILED")
    services.reconcile(services.client(), now=utcnow() + timedelta(days=2))
    db.session.commit()
    assert _payment().status == "SUCCESSFUL"
    assert db.session.execute(select(Subscription.status)).scalar_one() == "active"
    assert "status_mismatch" in [a.details["kind"] for a in _journal("payment.anomaly")]


def test_a_failed_payment_is_journalled_and_leaves_the_trial(admin_client, app):
    choose(admin_client)
    pay(admin_client, phone="2290197000000")  # …0000: PAYER_NOT_FOUND
    payment = _payment()
    _notify(admin_client, payment.reference, "FAILED")
    assert _payment().status == "FAILED"
    assert _journal("payment.failed")[0].details["reason"] == "PAYER_NOT_FOUND"
    assert db.session.execute(select(Subscription.status)).scalar_one() == "essai"


def test_gateway_down_keeps_the_payment_pending_and_retrying_charges_once(admin_client, app, simulator):
    choose(admin_client)
    simulator.mode = "down"
    pay(admin_client)
    payment = _payment()
    assert payment.status == "PENDING" and payment.reference is None and "503" in payment.message
    page = admin_client.get(f"/abonnement/paiements/{payment.id}").get_data(as_text=True)
    assert "réessayer sans risque" in page
    simulator.mode = "normal"
    pay(admin_client)
    pay(admin_client)  # a double click: same pending payment, no second request to FeexPay
    assert db.session.execute(select(func.count(Payment.id))).scalar_one() == 1
    assert _payment().reference
    initiations = [path for method, path in simulator.requests if "requesttopay" in path]
    assert len(initiations) == 2  # the 503, then the one that worked


def test_garbage_and_slow_answers_keep_the_payment_pending(admin_client, app, simulator):
    choose(admin_client)
    simulator.mode = "garbage"
    pay(admin_client)
    assert "illisible" in _payment().message
    simulator.mode, simulator.delay = "slow", 3  # beyond FEEXPAY_TIMEOUT=2
    pay(admin_client)
    payment = _payment()
    assert payment.status == "PENDING" and "à temps" in payment.message


def test_reconciliation_settles_stale_payments_and_expires_silent_ones(admin_client, app, simulator):
    choose(admin_client, "essentiel")
    pay(admin_client, "essentiel")
    choose(admin_client, "pro")
    pay(admin_client, "pro", phone="2290197999999")  # never answers
    db.session.commit()
    assert services.reconcile(services.client()) == {"checked": 0, "expired": 0}  # too recent
    later = utcnow() + timedelta(minutes=11)
    assert services.reconcile(services.client(), now=later) == {"checked": 2, "expired": 0}
    db.session.commit()
    statuses = dict(db.session.execute(select(Payment.plan_id, Payment.status)).all())
    assert sorted(statuses.values()) == ["PENDING", "SUCCESSFUL"]
    assert services.reconcile(services.client(), now=utcnow() + timedelta(hours=25)) == {"checked": 1, "expired": 1}
    db.session.commit()
    assert sorted(s for (s,) in db.session.execute(select(Payment.status))) == ["EXPIRED", "SUCCESSFUL"]


def test_members_who_are_not_admins_cannot_choose_or_pay(contributor_client, reader_client, app):
    for client in (contributor_client, reader_client):
        assert client.get("/abonnement").status_code == 403
        assert client.post("/abonnement/choisir", data={"plan": "pro", "period": "mensuel"}).status_code in (400, 403)
        token = re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
        assert (
            client.post(
                "/abonnement/choisir", data={"csrf_token": token, "plan": "pro", "period": "mensuel"}
            ).status_code
            == 403
        )
        assert client.post("/abonnement/payer", data={"csrf_token": token, "plan": "pro"}).status_code == 403
    assert db.session.execute(select(func.count(Payment.id))).scalar_one() == 0
    assert len(_journal("security.forbidden")) >= 4


def test_phone_and_network_are_validated_with_a_422_naming_the_field(admin_client, app, simulator):
    choose(admin_client)
    response = pay(admin_client, phone="12ab")
    assert response.status_code == 422 and 'data-field="phone"' in response.get_data(as_text=True)
    response = pay(admin_client, network="paypal")
    assert response.status_code == 422 and 'data-field="network"' in response.get_data(as_text=True)
    assert not [p for p in simulator.requests if "requesttopay" in p[1]]


def test_another_organisations_invoice_is_a_404(admin_client, app, make_user, make_org, login_as):
    choose(admin_client)
    pay(admin_client)
    _notify(admin_client, _payment().reference)
    invoice = db.session.execute(select(Invoice)).scalar_one()
    assert admin_client.get(f"/factures/{invoice.id}/pdf").status_code == 200
    other = login_as(make_user("admin", org=make_org("Autre")))
    assert other.get(f"/factures/{invoice.id}/pdf").status_code == 404
    assert other.get(f"/abonnement/paiements/{invoice.payment_id}").status_code == 404


def test_five_concurrent_notifications_make_one_payment_one_invoice_one_extension(admin_client, app):
    choose(admin_client)
    pay(admin_client)
    reference = _payment().reference
    db.session.commit()
    barrier = threading.Barrier(5)
    answers: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(_notify(client, reference).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [200] * 5
    db.session.expire_all()
    assert db.session.execute(select(func.count(Invoice.id))).scalar_one() == 1
    assert len(_journal("payment.succeeded")) == 1
    subscription = db.session.execute(select(Subscription)).scalar_one()
    settled = _payment().settled_at
    assert subscription.current_period_end - settled < timedelta(days=30 + 14, seconds=5)
