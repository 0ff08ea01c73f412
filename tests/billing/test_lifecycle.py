"""The subscription lifecycle: essai → active → impayee (7-day grace, reminders) → lecture_seule.

The clock is moved by passing ``now`` to the job (as the reconciliation tests do); the
reminders go through the real SMTP server of tests/auth (aiosmtpd on loopback).
"""

from __future__ import annotations

import io
from datetime import timedelta
from email.header import decode_header, make_header

from sqlalchemy import func, select

from portal.audit.models import AuditEntry
from portal.billing import lifecycle, services
from portal.billing.models import Payment, Subscription, SubscriptionReminder
from portal.database import utcnow
from portal.documents.models import File
from portal.extensions import db
from tests.api.conftest import bearer, make_token  # noqa: F401 - fixture
from tests.auth.support import Inbox
from tests.billing.conftest import choose, pay, run_concurrently
from tests.conftest import csrf
from tests.documents.conftest import armoire, storage_dir, upload  # noqa: F401 - fixtures


def _subscription(org_id: int) -> Subscription:
    db.session.expire_all()
    return db.session.execute(select(Subscription).where(Subscription.organization_id == org_id)).scalar_one()


def _changes() -> list[dict]:
    entries = db.session.execute(
        select(AuditEntry).where(AuditEntry.action == "subscription.changed").order_by(AuditEntry.id)
    ).scalars()
    return [entry.details for entry in entries if entry.details.get("source") == "lifecycle"]


def _advance(at) -> dict[str, int]:
    counts = lifecycle.advance(at)
    db.session.commit()
    return counts


def _subjects(inbox: Inbox, address: str) -> list[str]:
    return [str(make_header(decode_header(message["Subject"]))) for message in inbox.to(address)]


def test_a_lapsed_trial_gets_each_reminder_once_then_a_grace_then_read_only(app, admin, make_user, org, inbox):
    second_admin = make_user("admin", org=org)
    reader = make_user("lecteur", org=org)
    subscription = services.subscription_for(org.id)
    end = utcnow().replace(microsecond=0) + timedelta(days=10)
    subscription.trial_ends_at = end
    db.session.commit()

    assert _advance(end - timedelta(days=8))["reminders"] == 0
    assert _advance(end - timedelta(days=7))["reminders"] == 1
    assert _advance(end - timedelta(days=7, hours=-1))["reminders"] == 0  # the next hourly run: nothing again
    assert _advance(end - timedelta(days=4))["reminders"] == 0
    assert _advance(end - timedelta(days=3))["reminders"] == 1
    assert _advance(end - timedelta(days=1))["reminders"] == 1
    assert _subscription(org.id).status == "essai"
    assert _advance(end) == {"impayee": 1, "lecture_seule": 0, "reminders": 1}
    assert _subscription(org.id).status == "impayee"
    assert _advance(end + timedelta(days=6, hours=23)) == {"impayee": 0, "lecture_seule": 0, "reminders": 0}
    assert _advance(end + timedelta(days=7)) == {"impayee": 0, "lecture_seule": 1, "reminders": 1}
    assert _advance(end + timedelta(days=30)) == {"impayee": 0, "lecture_seule": 0, "reminders": 0}
    assert _subscription(org.id).status == "lecture_seule"

    kinds = db.session.execute(select(SubscriptionReminder.kind).order_by(SubscriptionReminder.id)).scalars().all()
    assert kinds == ["j7", "j3", "j1", "j0", "lecture_seule"]
    for address in (admin.email, second_admin.email):
        subjects = _subjects(inbox, address)
        assert len(subjects) == 5
        assert "dans 7 jours" in subjects[0] and "dans 3 jours" in subjects[1] and "dans 1 jour" in subjects[2]
        assert "arrivé à échéance" in subjects[3] and "lecture seule" in subjects[4]
    assert inbox.to(reader.email) == []  # reminders go to those who can pay
    assert "https://coffre.test/abonnement" in Inbox.body(inbox.to(admin.email)[0])
    assert [(c["from"], c["to"]) for c in _changes()] == [("essai", "impayee"), ("impayee", "lecture_seule")]
    # Never deleted by billing: the organisation and its subscription are still there.
    assert db.session.get(type(org), org.id) is not None


def test_a_stopped_scheduler_sends_only_the_reminder_due_now(app, admin, org, inbox):
    subscription = services.subscription_for(org.id)
    end = utcnow().replace(microsecond=0) + timedelta(days=10)
    subscription.trial_ends_at = end
    db.session.commit()
    assert _advance(end - timedelta(days=2))["reminders"] == 1
    assert db.session.execute(select(SubscriptionReminder.kind)).scalars().all() == ["j3"]
    assert len(inbox.to(admin.email)) == 1


def test_a_mail_failure_leaves_the_reminder_to_the_next_run(app, admin, org, inbox):
    subscription = services.subscription_for(org.id)
    end = utcnow().replace(microsecond=0) + timedelta(days=5)
    subscription.trial_ends_at = end
    db.session.commit()
    port = app.config["SMTP_PORT"]
    app.config["SMTP_PORT"] = 1  # nothing listens there: the send fails
    assert _advance(end - timedelta(days=3))["reminders"] == 0
    assert db.session.execute(select(func.count(SubscriptionReminder.id))).scalar_one() == 0
    app.config["SMTP_PORT"] = port
    assert _advance(end - timedelta(days=3))["reminders"] == 1
    assert len(inbox.to(admin.email)) == 1


def test_an_active_period_that_ends_unpaid_lapses_and_a_payment_reactivates(app, admin_client, admin, org, inbox):
    choose(admin_client, "essentiel")
    pay(admin_client, "essentiel")
    reference = db.session.execute(select(Payment.reference)).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": reference})
    subscription = _subscription(org.id)
    assert subscription.status == "active"
    end = subscription.current_period_end
    assert _advance(end - timedelta(days=7))["reminders"] == 1
    assert "Essentiel" in Inbox.body(inbox.to(admin.email)[-1])
    _advance(end + timedelta(days=1))
    assert _subscription(org.id).status == "impayee"
    unpaid = admin_client.get("/abonnement").get_data(as_text=True)
    assert 'id="read-only-from"' in unpaid and 'data-status="impayee"' in unpaid
    _advance(end + timedelta(days=8))
    assert _subscription(org.id).status == "lecture_seule"

    page = admin_client.get("/abonnement").get_data(as_text=True)
    assert 'id="subscription-state"' in page and "Organisation en lecture seule" in page
    choose(admin_client, "essentiel")
    pay(admin_client, "essentiel")
    db.session.expire_all()
    pending = db.session.execute(select(Payment).where(Payment.status == "PENDING")).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": pending.reference})
    subscription = _subscription(org.id)
    assert subscription.status == "active"
    assert subscription.current_period_end > utcnow() + timedelta(days=29)
    reactivation = db.session.execute(
        select(AuditEntry).where(AuditEntry.action == "subscription.changed").order_by(AuditEntry.id.desc())
    ).scalars()
    assert any(e.details.get("from") == "lecture_seule" and e.details.get("to") == "active" for e in reactivation)
    # A new period, new reminders: the old period's rows do not silence them.
    assert _advance(subscription.current_period_end - timedelta(days=7))["reminders"] == 1


def _read_only(org_id: int) -> None:
    subscription = services.subscription_for(org_id)
    subscription.trial_ends_at = utcnow() - timedelta(days=8)
    db.session.commit()
    lifecycle.advance()
    db.session.commit()
    assert _subscription(org_id).status == "lecture_seule"


def test_read_only_refuses_uploads_and_invitations_and_keeps_reads(
    app,
    admin_client,
    admin,
    org,
    armoire,  # noqa: F811
    storage_dir,  # noqa: F811
    make_token,  # noqa: F811
    inbox,
):
    assert upload(admin_client, armoire.id, "avant.txt", b"avant le retard\n").status_code == 201
    kept = db.session.execute(select(File)).scalar_one()
    _read_only(org.id)

    refused = upload(admin_client, armoire.id, "apres.txt", b"refuse\n")
    text = refused.get_data(as_text=True)
    assert refused.status_code == 403 and "lecture seule" in text and 'href="/abonnement"' in text
    secret = make_token(admin)
    api = admin_client.post(
        "/api/v1/fichiers",
        headers=bearer(secret),
        data={"armoire_id": str(armoire.id), "file": (io.BytesIO(b"depuis le bureau\n"), "bureau.txt")},
        content_type="multipart/form-data",
    )
    assert api.status_code == 403 and api.mimetype == "application/problem+json"
    assert api.get_json()["type"] == "/problems/subscription-read-only"
    assert "/abonnement" in api.get_json()["detail"]
    invitation = admin_client.post(
        "/users/invite",
        data={"csrf_token": csrf(admin_client, "/users"), "email": "nouveau@diallo.sn", "name": "N", "role": "lecteur"},
    )
    assert invitation.status_code == 403 and "lecture seule" in invitation.get_data(as_text=True)
    assert db.session.execute(select(func.count(File.id))).scalar_one() == 1

    download = admin_client.get(f"/fichiers/{kept.id}/telecharger")
    assert download.status_code == 200 and download.data == b"avant le retard\n"
    api_download = admin_client.get(f"/api/v1/fichiers/{kept.id}/contenu", headers=bearer(secret))
    assert api_download.status_code == 200 and api_download.data == b"avant le retard\n"
    banner = admin_client.get(f"/armoires/{armoire.id}").get_data(as_text=True)
    assert 'id="subscription-notice"' in banner and 'data-status="lecture_seule"' in banner


def test_the_banner_is_for_admins_only(app, admin_client, reader_client, org, armoire):  # noqa: F811
    _read_only(org.id)
    assert 'id="subscription-notice"' in admin_client.get("/armoires").get_data(as_text=True)
    assert 'id="subscription-notice"' not in reader_client.get("/armoires").get_data(as_text=True)


def test_concurrent_runs_transition_and_mail_once(app, admin, org, inbox):
    subscription = services.subscription_for(org.id)
    end = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    subscription.trial_ends_at = end
    db.session.commit()
    results = run_concurrently(app, 4, lambda: lifecycle.advance(end + timedelta(minutes=1)))
    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == []
    assert _subscription(org.id).status == "impayee"
    assert [(c["from"], c["to"]) for c in _changes()] == [("essai", "impayee")]
    assert len(inbox.to(admin.email)) == 1
    assert db.session.execute(select(SubscriptionReminder.kind)).scalars().all() == ["j0"]


def test_the_platform_view_shows_each_organisation_plan_and_status(app, login_as, make_org, make_user, org):
    _read_only(org.id)
    fresh = make_org("Sans abonnement")
    platform_admin = make_user("admin", org=make_org("Plateforme"), is_platform_admin=True)
    html = login_as(platform_admin).get("/dashboard/plateforme").get_data(as_text=True)
    row = html[html.index(org.name) :].split("</tr>")[0]
    assert 'data-status="lecture_seule"' in row and "Lecture seule" in row and "Essai" in row
    fresh_row = html[html.index(fresh.name) :].split("</tr>")[0]
    assert 'data-status="essai"' in fresh_row


def test_the_lifecycle_command_runs_one_pass(app, admin, org, inbox):
    subscription = services.subscription_for(org.id)
    subscription.trial_ends_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["billing", "lifecycle"])
    assert result.exit_code == 0 and "impayee: 1" in result.output and "reminders: 1" in result.output
    assert _subscription(org.id).status == "impayee"
