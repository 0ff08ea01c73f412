"""Quotas enforced where the work happens: uploads (storage) and invitations (members)."""

from __future__ import annotations

import os

from sqlalchemy import func, select

from portal.auth.models import User
from portal.documents.models import File
from portal.documents.services.quota import quota_bytes
from portal.extensions import db
from portal.organizations.models import Organization
from tests.billing.conftest import choose, pay
from tests.conftest import csrf
from tests.documents.conftest import armoire, storage_dir, upload  # noqa: F401 - fixtures


def test_the_trial_quota_refuses_an_upload_with_413_and_keeps_nothing(app, admin_client, admin, armoire, storage_dir):  # noqa: F811
    app.config["COFFRE_TRIAL_STORAGE_MB"] = 1
    assert quota_bytes(admin.organization_id) == 1024 * 1024
    assert upload(admin_client, armoire.id, "a.bin", os.urandom(600_000)).status_code == 201
    response = upload(admin_client, armoire.id, "b.bin", os.urandom(600_000))
    assert response.status_code == 413 and "quota" in response.get_data(as_text=True)
    assert db.session.execute(select(func.count(File.id))).scalar_one() == 1
    page = admin_client.get("/abonnement").get_data(as_text=True)
    assert 'id="storage-usage"' in page and 'max="1048576"' in page


def test_paying_a_plan_raises_the_storage_quota(app, admin_client, admin):
    app.config["COFFRE_TRIAL_STORAGE_MB"] = 1
    choose(admin_client, "essentiel")
    pay(admin_client, "essentiel")
    db.session.expire_all()
    from portal.billing.models import Payment

    reference = db.session.execute(select(Payment.reference)).scalar_one()
    admin_client.post("/abonnement/feexpay/notification", json={"reference": reference})
    db.session.expire_all()
    assert db.session.get(Organization, admin.organization_id).storage_quota_bytes == 10240 * 1024 * 1024
    assert quota_bytes(admin.organization_id) == 10240 * 1024 * 1024


def test_an_invitation_beyond_the_member_quota_is_refused(app, admin_client, admin, make_user, org):
    for _ in range(4):  # the trial has Essentiel's 5 members: the admin and four more
        make_user("lecteur", org=org)
    token = csrf(admin_client, "/users")
    response = admin_client.post(
        "/users/invite",
        data={"csrf_token": token, "email": "sixieme@diallo.sn", "name": "Sixième", "role": "lecteur"},
    )
    assert response.status_code == 403
    assert "5 membres" in response.get_data(as_text=True)
    assert db.session.execute(select(User).where(User.email == "sixieme@diallo.sn")).first() is None
