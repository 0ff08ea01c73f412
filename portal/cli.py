"""Command-line tasks: ``flask --app wsgi <command>``."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.config import load_or_create_secret
from portal.extensions import db
from portal.security.text import clean_name


@click.command("create-admin")
@click.option("--email", required=True, help="E-mail address used to sign in.")
@click.option("--name", required=True, help="Display name.")
@click.option(
    "--organization",
    default="Administration Coffre",
    show_default=True,
    help="Organisation the administrator belongs to (created when missing).",
)
@click.password_option(help="At least 12 characters; prompted when omitted.")
def create_admin_command(email: str, name: str, organization: str, password: str) -> None:
    """Create a platform administrator (also admin of their organisation)."""
    from portal.auth.models import User
    from portal.organizations.models import Organization
    from portal.security.passwords import hash_password
    from portal.security.permissions import Role

    name, organization = clean_name(name), clean_name(organization)
    if not name or not organization:
        raise click.BadParameter("the name and the organisation need visible characters")
    if len(password) < 12:
        raise click.BadParameter("the password needs at least 12 characters", param_hint="password")
    if db.session.execute(select(User).where(User.email == email.lower())).scalar_one_or_none():
        raise click.ClickException(f"a user with the address {email} already exists")
    org = db.session.execute(select(Organization).where(Organization.name == organization)).scalar_one_or_none()
    if org is None:
        org = Organization(name=organization)
        db.session.add(org)
        db.session.flush()
        record(
            "organization.created",
            Actor.system(org.id),
            target_type="organization",
            target_id=org.id,
            target_label=org.name,
        )
    user = User(
        organization_id=org.id,
        email=email.lower(),
        name=name,
        role=Role.ADMIN.value,
        is_platform_admin=True,
        password_hash=hash_password(password),
    )
    db.session.add(user)
    db.session.flush()
    record(
        "user.registered",
        Actor.system(org.id),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"platform_admin": True},
    )
    db.session.commit()
    click.echo(f"Platform administrator {email} created in organisation “{org.name}”.")


DEMO_ORGANIZATION = "Cabinet Diallo & Associés"
DEMO_ARMOIRES = [
    ("Ressources humaines", "Contrats de travail, fiches de paie, congés"),
    ("Comptabilité", "Factures, relevés bancaires, déclarations fiscales"),
    ("Contrats clients", "Conventions signées et avenants"),
    ("Juridique", "Statuts, procès-verbaux d'assemblée, registres"),
]
DEMO_USERS = [
    ("awa.diallo@demo.coffre.test", "Awa Diallo", "admin"),
    ("koffi.mensah@demo.coffre.test", "Koffi Mensah", "contributeur"),
    ("fatou.ndiaye@demo.coffre.test", "Fatou Ndiaye", "lecteur"),
]


@click.command("demo-data")
@click.option("--password", default=None, help="Password for every demo user; a random one is generated when omitted.")
def demo_data_command(password: str | None) -> None:
    """Load a demo organisation with armoires and one user of each role (idempotent)."""
    from portal.auth.models import User
    from portal.documents.models import Armoire
    from portal.organizations.models import Organization
    from portal.security.passwords import hash_password

    password_file = Path(current_app.instance_path) / "demo_password"
    existing = db.session.execute(
        select(Organization).where(Organization.name == DEMO_ORGANIZATION)
    ).scalar_one_or_none()
    if existing is not None:
        click.echo(f"Demo organisation “{DEMO_ORGANIZATION}” already present; nothing to do.")
        _echo_demo_accounts(password_file)
        return
    if password is None:
        # No default password (ASVS 6.3.2): a random one, kept 0600 beside the other secrets.
        password = load_or_create_secret(password_file, 12).decode()
    # The demo shows the portal at once; a real organisation requires 2FA by default.
    org = Organization(name=DEMO_ORGANIZATION, require_2fa=False)
    db.session.add(org)
    db.session.flush()
    system = Actor.system(org.id)
    record("organization.created", system, target_type="organization", target_id=org.id, target_label=org.name)
    password_hash = hash_password(password)
    users = []
    for email, name, role in DEMO_USERS:
        user = User(organization_id=org.id, email=email, name=name, role=role, password_hash=password_hash)
        db.session.add(user)
        users.append(user)
    db.session.flush()
    for user in users:
        record(
            "user.registered",
            system,
            target_type="user",
            target_id=user.id,
            target_label=user.email,
            details={"role": user.role},
        )
    for name, description in DEMO_ARMOIRES:
        armoire = Armoire(organization_id=org.id, name=name, description=description, created_by_id=users[0].id)
        db.session.add(armoire)
        db.session.flush()
        record(
            "armoire.created",
            Actor(org.id, users[0].id),
            target_type="armoire",
            target_id=armoire.id,
            target_label=armoire.name,
        )
    from portal.documents.services.demo import seed_demo_documents

    seed_demo_documents(org.id, users[1].id)
    db.session.commit()
    click.echo(f"Demo organisation “{org.name}” created with {len(DEMO_ARMOIRES)} armoires.")
    _echo_demo_accounts(password_file if password_file.exists() else None, password)


def _echo_demo_accounts(password_file: Path | None, password: str | None = None) -> None:
    click.echo("Demo accounts:")
    for email, _name, role in DEMO_USERS:
        click.echo(f"  {role:<13} {email}")
    if password_file is not None and password_file.exists():
        click.echo(f"  password for all three: {password_file.read_text().strip()}  (from {password_file})")
    elif password:
        click.echo(f"  password for all three: {password}")


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin_command)
    app.cli.add_command(demo_data_command)
    # Feature command groups live with their feature (portal/<feature>/cli.py).
    from portal.audit import cli as audit_cli
    from portal.backups import cli as backups_cli
    from portal.billing import cli as billing_cli
    from portal.compliance import cli as compliance_cli
    from portal.crypto import cli as crypto_cli
    from portal.dashboard import cli as dashboard_cli
    from portal.documents import cli as documents_cli
    from portal.privacy import cli as privacy_cli
    from portal.storage import cli as storage_cli

    for feature_cli in (
        audit_cli,
        backups_cli,
        billing_cli,
        compliance_cli,
        crypto_cli,
        dashboard_cli,
        documents_cli,
        privacy_cli,
        storage_cli,
    ):
        feature_cli.init_app(app)
