"""Issue 12, point 1: plans are edited by platform administrators at /plateforme/formules."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.billing import services
from portal.billing.models import Invoice, Payment, Plan, Subscription
from portal.extensions import db
from portal.organizations.models import Organization
from tests.billing.conftest import choose, pay
from tests.conftest import csrf

FIELDS = {
    "name": "Pro",
    "price_month_ht": "45000",
    "price_year_ht": "450000",
    "storage_quota_mb": "102400",
    "member_quota": "25",
    "backup": "quotidienne",
    "sso": "y",
    "position": "2",
    "active": "y",
}


@pytest.fixture
def platform(login_as, make_user, make_org):
    root = make_user("lecteur", org=make_org("Plateforme"), is_platform_admin=True)
    return root, login_as(root)


def _plan(code: str) -> Plan:
    db.session.expire_all()
    return db.session.execute(select(Plan).where(Plan.code == code)).scalar_one()


def _journal(action: str) -> list[AuditEntry]:
    return list(
        db.session.execute(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).scalars()
    )


def _post(client, url: str, **fields):
    return client.post(url, data={"csrf_token": csrf(client, "/plateforme/formules"), **fields})


def _edit(client, code: str, **changes):
    return _post(client, f"/plateforme/formules/{_plan(code).id}", **(FIELDS | changes))


def test_only_platform_admins_reach_the_plans_page(client, admin_client, reader_client, platform):
    assert client.get("/plateforme/formules").status_code in (302, 401)
    for member in (admin_client, reader_client):
        assert member.get("/plateforme/formules").status_code == 403
    pro = _plan("pro").id
    token = csrf(admin_client, "/abonnement")
    forged = FIELDS | {"name": "Pirate", "csrf_token": token}
    assert admin_client.post(f"/plateforme/formules/{pro}", data=forged).status_code == 403
    assert _plan("pro").name == "Pro"
    refused = [e.details for e in _journal("security.forbidden")]
    assert any(d.get("path") == f"/plateforme/formules/{pro}" for d in refused)
    _root, root_client = platform
    page = root_client.get("/plateforme/formules").get_data(as_text=True)
    assert all(f'id="plan-row-{code}"' in page for code in ("essentiel", "pro", "entreprise"))
    assert 'id="plans-link"' in root_client.get("/dashboard/plateforme").get_data(as_text=True)
    assert root_client.get("/plateforme/formules/99999").status_code == 404


def test_creating_a_plan_validates_and_journals_on_the_platform_chain(platform):
    root, root_client = platform
    new = FIELDS | {"code": "startup", "name": "Startup", "price_month_ht": "8000", "price_year_ht": "80000"}
    assert _post(root_client, "/plateforme/formules", **new).status_code in (302, 303)
    plan = _plan("startup")
    assert (plan.price_month_ht, plan.member_quota, plan.features) == (
        8000,
        25,
        {"sso": True, "compliance": False, "backup": "quotidienne"},
    )
    [entry] = _journal("plan.created")
    assert entry.organization_id is None and entry.user_id == root.id and entry.details["code"] == "startup"

    duplicate = _post(root_client, "/plateforme/formules", **new)
    assert duplicate.status_code == 422 and "déjà le code" in duplicate.get_data(as_text=True)
    for field, value in (
        ("price_month_ht", "0"),
        ("price_year_ht", "-5"),
        ("member_quota", "abc"),
        ("code", "Pas Bon"),
    ):
        response = _post(root_client, "/plateforme/formules", **(new | {"code": "autre", field: value}))
        body = response.get_data(as_text=True)
        assert response.status_code == 422, (field, response.status_code)
        assert f'data-field="{field}"' in body and 'aria-invalid="true"' in body
    assert "supérieur à 0" in _post(
        root_client, "/plateforme/formules", **(new | {"code": "x", "price_month_ht": "0"})
    ).get_data(as_text=True)
    no_token = root_client.post("/plateforme/formules", data=new | {"code": "sans-jeton"})
    assert no_token.status_code == 400
    assert db.session.execute(select(Plan.code).where(Plan.code.in_(["autre", "x", "sans-jeton"]))).first() is None


def test_a_price_change_leaves_invoices_and_pending_payments_alone(app, admin_client, org, platform):
    _root, root_client = platform
    choose(admin_client, "pro")
    pay(admin_client, "pro")
    first = db.session.execute(select(Payment)).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": first.reference})
    invoice = db.session.execute(select(Invoice)).scalar_one()
    assert invoice.amount_ttc == 53100
    # A second payment (a renewal) is pending when the price changes.
    choose(admin_client, "pro")
    pay(admin_client, "pro")
    db.session.expire_all()
    pending = db.session.execute(select(Payment).where(Payment.status == "PENDING")).scalar_one()
    assert pending.amount_ttc == 53100

    assert _edit(root_client, "pro", price_month_ht="60000").status_code in (302, 303)
    assert _plan("pro").price_month_ht == 60000
    [entry] = _journal("plan.changed")
    assert entry.details["changes"] == {"price_month_ht": [45000, 60000]}
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).amount_ttc == 53100
    assert db.session.get(Payment, pending.id).amount_ttc == 53100
    # It still settles for the amount it asked (the simulator answers that amount).
    admin_client.post("/abonnement/feexpay/notification", json={"reference": pending.reference})
    db.session.expire_all()
    assert db.session.get(Payment, pending.id).status == "SUCCESSFUL"
    amounts = sorted(i.amount_ttc for i in db.session.execute(select(Invoice)).scalars())
    assert amounts == [53100, 53100]
    # The next payment asks the new price: 60 000 HT + 18 %.
    _tva, ttc = services.split_amounts(60000)
    assert ttc == 70800


def test_a_quota_change_applies_to_subscribed_organisations_at_once(app, admin_client, admin, org, make_org, platform):
    _root, root_client = platform
    choose(admin_client, "essentiel")
    pay(admin_client, "essentiel")
    reference = db.session.execute(select(Payment.reference)).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": reference})
    trial_org = make_org("En essai")
    services.subscription_for(trial_org.id)
    db.session.commit()

    assert _edit(
        root_client, "essentiel", name="Essentiel", storage_quota_mb="20480", member_quota="6"
    ).status_code in (
        302,
        303,
    )
    db.session.expire_all()
    assert db.session.get(Organization, org.id).storage_quota_bytes == 20480 * 1024 * 1024
    assert db.session.get(Organization, trial_org.id).storage_quota_bytes is None  # the trial keeps its own
    [entry] = _journal("plan.changed")
    assert entry.details["organisations_updated"] == 1
    assert entry.details["changes"]["storage_quota_mb"] == [10240, 20480]
    assert services.usage(services.subscription_for(org.id)).member_quota == 6
    # Nothing changed: nothing journalled.
    _edit(root_client, "essentiel", name="Essentiel", storage_quota_mb="20480", member_quota="6")
    assert len(_journal("plan.changed")) == 1


def test_deactivating_hides_a_plan_but_keeps_its_subscribers(
    app, admin_client, admin, org, make_org, make_user, login_as, platform
):
    _root, root_client = platform
    choose(admin_client, "pro")
    pay(admin_client, "pro")
    reference = db.session.execute(select(Payment.reference)).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": reference})
    assert _edit(root_client, "pro", active="").status_code in (302, 303)  # an unticked box sends nothing
    assert _plan("pro").active is False

    other = login_as(make_user("admin", org=make_org("Nouvelle")))
    assert 'id="plan-pro"' not in other.get("/abonnement").get_data(as_text=True)
    assert choose(other, "pro").status_code == 422
    # The organisation on Pro still sees it and may renew it.
    assert 'id="plan-pro"' in admin_client.get("/abonnement").get_data(as_text=True)
    assert choose(admin_client, "pro").status_code == 303
    subscription = db.session.execute(select(Subscription).where(Subscription.organization_id == org.id)).scalar_one()
    assert subscription.plan_id == _plan("pro").id


def test_a_plan_in_use_cannot_be_deleted(app, admin_client, platform):
    _root, root_client = platform
    choose(admin_client, "entreprise")  # chosen: referenced by the subscription
    token = csrf(root_client, "/plateforme/formules")
    response = root_client.post(f"/plateforme/formules/{_plan('entreprise').id}/supprimer", data={"csrf_token": token})
    assert response.status_code == 409 and "seulement désactivée" in response.get_data(as_text=True)
    assert _plan("entreprise")
    unused = _plan("essentiel").id
    assert root_client.post(f"/plateforme/formules/{unused}/supprimer", data={"csrf_token": token}).status_code in (
        302,
        303,
    )
    assert db.session.get(Plan, unused) is None
    assert [e.details["code"] for e in _journal("plan.deleted")] == ["essentiel"]
