"""Issue 12, point 3: a downgrade takes effect at the period's end, paid ahead or not, and is
postponed (admins told once) while usage exceeds the smaller plan."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.billing import changes, services
from portal.billing.models import Invoice, Payment, Plan, Subscription, SubscriptionReminder
from portal.database import utcnow
from portal.extensions import db
from portal.organizations.models import Organization
from tests.billing.conftest import choose, pay, run_concurrently
from tests.conftest import csrf

GIB = 1024 * 1024 * 1024


def _plan(code: str) -> Plan:
    return db.session.execute(select(Plan).where(Plan.code == code)).scalar_one()


def _on_pro(org_id: int, days_left: int = 10):
    """An active, paid Pro subscription whose period ends in ``days_left`` days."""
    subscription = services.subscription_for(org_id)
    pro = _plan("pro")
    subscription.plan_id, subscription.period, subscription.status = pro.id, "mensuel", "active"
    end = utcnow().replace(microsecond=0) + timedelta(days=days_left)
    subscription.current_period_end = end
    db.session.execute(
        update(Organization).where(Organization.id == org_id).values(storage_quota_bytes=pro.storage_quota_mb << 20)
    )
    db.session.commit()
    return end


def _subscription(org_id: int) -> Subscription:
    db.session.expire_all()
    return db.session.execute(select(Subscription).where(Subscription.organization_id == org_id)).scalar_one()


def _journal(action: str) -> list[AuditEntry]:
    return list(
        db.session.execute(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).scalars()
    )


def _quota(org_id: int) -> int:
    db.session.expire_all()
    return db.session.get(Organization, org_id).storage_quota_bytes


def _apply(at) -> dict[str, int]:
    counts = changes.apply_due(at)
    db.session.commit()
    return counts


def test_a_chosen_downgrade_is_shown_with_its_date_and_can_be_cancelled(admin_client, admin, org):
    end = _on_pro(org.id)
    assert choose(admin_client, "essentiel").status_code == 303
    subscription = _subscription(org.id)
    assert subscription.next_plan_at == end and subscription.plan_id == _plan("pro").id
    page = admin_client.get("/abonnement").get_data(as_text=True)
    assert 'id="scheduled-change"' in page and "passera à la formule Essentiel" in page
    assert "Payer d&#39;avance la formule Essentiel" in page or "Payer d'avance la formule Essentiel" in page

    response = admin_client.post(
        "/abonnement/annuler-changement", data={"csrf_token": csrf(admin_client, "/abonnement")}
    )
    assert response.status_code in (302, 303)
    subscription = _subscription(org.id)
    assert (subscription.next_plan_id, subscription.next_plan_at) == (None, None)
    assert _journal("subscription.changed")[-1].details == {"cancelled": "essentiel"}
    assert 'id="scheduled-change"' not in admin_client.get("/abonnement").get_data(as_text=True)
    # Nothing left to cancel: a 409, not a 500.
    again = admin_client.post("/abonnement/annuler-changement", data={"csrf_token": csrf(admin_client, "/abonnement")})
    assert again.status_code == 409


def test_the_downgrade_switches_at_the_period_end_once(app, admin_client, admin, org):
    end = _on_pro(org.id)
    choose(admin_client, "essentiel")
    assert _apply(end - timedelta(minutes=1)) == {"switched": 0, "postponed": 0}
    assert _subscription(org.id).plan_id == _plan("pro").id
    assert _apply(end + timedelta(minutes=5)) == {"switched": 1, "postponed": 0}
    subscription = _subscription(org.id)
    assert subscription.plan_id == _plan("essentiel").id
    assert (subscription.next_plan_id, subscription.next_plan_at) == (None, None)
    assert _quota(org.id) == 10 * GIB
    switched = [e.details for e in _journal("subscription.changed") if e.details.get("source") == "scheduled_change"]
    assert [(d["from_plan"], d["to_plan"]) for d in switched] == [("pro", "essentiel")]
    assert _apply(end + timedelta(hours=1)) == {"switched": 0, "postponed": 0}


def test_paying_a_downgrade_ahead_keeps_the_current_plan_until_the_period_end(app, admin_client, admin, org):
    end = _on_pro(org.id)
    choose(admin_client, "essentiel")
    assert pay(admin_client, "essentiel").status_code == 303
    payment = db.session.execute(select(Payment)).scalar_one()
    assert payment.amount_ttc == 17700  # Essentiel's own price: nothing prorated on a downgrade
    admin_client.post("/abonnement/feexpay/notification", json={"reference": payment.reference})
    subscription = _subscription(org.id)
    assert db.session.get(Payment, payment.id).status == "SUCCESSFUL"
    # Not now: Pro and its quota stay until the paid period's end; the paid month follows it.
    assert subscription.plan_id == _plan("pro").id and _quota(org.id) == 100 * GIB
    assert subscription.next_plan_at == end
    assert subscription.current_period_end == end + timedelta(days=30)
    invoice = db.session.execute(select(Invoice)).scalar_one()
    assert (invoice.period_start, invoice.period_end) == (end, end + timedelta(days=30))
    page = admin_client.get("/abonnement").get_data(as_text=True)
    assert 'id="paid-ahead"' in page and 'id="cancel-change"' not in page
    # Its time is owed on Essentiel: neither cancelling nor choosing another plan may drop it.
    token = csrf(admin_client, "/abonnement")
    assert admin_client.post("/abonnement/annuler-changement", data={"csrf_token": token}).status_code == 409
    assert choose(admin_client, "entreprise").status_code == 409
    assert pay(admin_client, "entreprise").status_code == 409

    assert _apply(end)["switched"] == 1
    subscription = _subscription(org.id)
    assert subscription.plan_id == _plan("essentiel").id and subscription.current_period_end == end + timedelta(days=30)
    assert subscription.status == "active" and _quota(org.id) == 10 * GIB


def test_a_downgrade_over_the_smaller_quota_is_postponed_and_the_admins_told_once(app, admin, make_user, org, inbox):
    end = _on_pro(org.id)
    actor = Actor(org.id, admin.id)
    services.choose_plan(actor, "essentiel", "mensuel")
    db.session.commit()
    extra = [make_user("lecteur", org=org) for _ in range(5)]  # six members: Essentiel allows five

    assert _apply(end) == {"switched": 0, "postponed": 1}
    subscription = _subscription(org.id)
    assert subscription.plan_id == _plan("pro").id and subscription.next_plan_at == end
    assert _quota(org.id) == 100 * GIB
    [entry] = _journal("subscription.downgrade_postponed")
    assert entry.details["members"] == 6 and entry.details["member_quota"] == 5
    [message] = inbox.to(admin.email)
    assert "Essentiel" in message["Subject"] or "Essentiel" in str(message)

    assert _apply(end + timedelta(hours=1)) == {"switched": 0, "postponed": 0}
    assert len(inbox.to(admin.email)) == 1 and len(_journal("subscription.downgrade_postponed")) == 1

    db.session.execute(update(User).where(User.id == extra[0].id).values(active=False))
    db.session.commit()
    assert _apply(end + timedelta(hours=2)) == {"switched": 1, "postponed": 0}
    assert _subscription(org.id).plan_id == _plan("essentiel").id
    assert db.session.execute(select(SubscriptionReminder.kind)).scalars().all() == ["bascule_refusee"]


def test_the_postponed_change_is_explained_on_the_page(admin_client, admin, make_user, org):
    _on_pro(org.id)
    choose(admin_client, "essentiel")
    for _ in range(5):
        make_user("lecteur", org=org)
    past = utcnow() - timedelta(minutes=5)  # the switch date has come (the page reads the real clock)
    db.session.execute(update(Subscription).values(next_plan_at=past, current_period_end=past))
    db.session.commit()
    assert _apply(utcnow())["postponed"] == 1
    page = admin_client.get("/abonnement").get_data(as_text=True)
    assert "est reporté" in page and "première vérification horaire" in page


def test_concurrent_runs_switch_once(app, admin_client, admin, org):
    end = _on_pro(org.id)
    choose(admin_client, "essentiel")
    results = run_concurrently(app, 4, lambda: changes.apply_due(end + timedelta(minutes=1))["switched"])
    assert sorted(results) == [0, 0, 0, 1], results
    switched = [e for e in _journal("subscription.changed") if e.details.get("source") == "scheduled_change"]
    assert len(switched) == 1
    assert _subscription(org.id).plan_id == _plan("essentiel").id
