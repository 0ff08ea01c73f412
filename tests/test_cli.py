"""Command-line tasks: demo data and platform administrator."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.auth.models import User
from portal.documents.models import Armoire
from portal.extensions import db
from portal.organizations.models import Organization


def test_demo_data_creates_a_living_organisation_once(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo-data"])
    assert result.exit_code == 0, result.output
    org = db.session.execute(select(Organization)).scalar_one()
    roles = set(db.session.execute(select(User.role).where(User.organization_id == org.id)).scalars())
    assert roles == {"admin", "contributeur", "lecteur"}
    assert db.session.execute(select(func.count()).select_from(Armoire)).scalar_one() >= 3
    assert "password for all three" in result.output

    again = runner.invoke(args=["demo-data"])
    assert again.exit_code == 0 and "already present" in again.output
    assert db.session.execute(select(func.count()).select_from(Organization)).scalar_one() == 1


def test_create_admin_makes_a_platform_administrator(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-admin", "--email", "Root@Example.test", "--name", "Root", "--password", "une phrase assez longue"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.execute(select(User)).scalar_one()
    assert user.is_platform_admin and user.role == "admin" and user.email == "root@example.test"
    assert user.password_hash.startswith("$2b$")

    duplicate = runner.invoke(
        args=["create-admin", "--email", "root@example.test", "--name", "R", "--password", "une phrase assez longue"]
    )
    assert duplicate.exit_code != 0


def test_create_admin_refuses_a_short_password(app):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "--email", "a@example.test", "--name", "A", "--password", "court"]
    )
    assert result.exit_code != 0
    assert db.session.execute(select(func.count()).select_from(User)).scalar_one() == 0
