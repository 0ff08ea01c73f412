"""The desktop app's billing endpoints: /api/v1/abonnement and /api/v1/factures."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from portal.billing.models import Payment
from portal.extensions import db
from tests.api.conftest import bearer, make_token  # noqa: F401 - fixture
from tests.billing.conftest import choose, pay


def test_subscription_and_invoices_over_the_api(app, admin_client, admin, make_user, make_org, make_token, org):  # noqa: F811
    secret = make_token(admin)
    trial = admin_client.get("/api/v1/abonnement", headers=bearer(secret))
    assert trial.status_code == 200
    body = trial.get_json()
    assert body["status"] == "essai" and body["plan"] is None
    assert body["quotas"] == {"storage_bytes": 1024 * 1024 * 1024, "members": 5}
    assert body["usage"]["members"] == 1

    choose(admin_client, "pro")
    pay(admin_client, "pro")
    db.session.expire_all()
    reference = db.session.execute(select(Payment.reference)).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": reference})

    active = admin_client.get("/api/v1/abonnement", headers=bearer(secret)).get_json()
    assert active["status"] == "active" and active["plan"] == "pro" and active["quotas"]["members"] == 25
    listing = admin_client.get("/api/v1/factures", headers=bearer(secret)).get_json()["items"]
    assert len(listing) == 1 and listing[0]["amount_ttc"] == 53100 and listing[0]["currency"] == "XOF"
    pdf = admin_client.get(f"/api/v1/factures/{listing[0]['id']}/pdf", headers=bearer(secret))
    assert pdf.status_code == 200 and hashlib.sha256(pdf.data).hexdigest() == listing[0]["sha256"]

    reader = make_token(make_user("lecteur", org=org))
    assert admin_client.get("/api/v1/factures", headers=bearer(reader)).status_code == 403
    stranger = make_token(make_user("admin", org=make_org("Autre")))
    missing = admin_client.get(f"/api/v1/factures/{listing[0]['id']}/pdf", headers=bearer(stranger))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert admin_client.get("/api/v1/factures", headers=bearer(stranger)).get_json() == {"items": []}
