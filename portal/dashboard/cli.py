"""``flask dashboard rebuild`` (recount the rollups) and ``flask dashboard seed`` (bench data)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from portal.dashboard import rollups
from portal.extensions import db
from portal.organizations.models import Organization

dashboard_cli = AppGroup("dashboard", help="Dashboard rollups and benchmark data.")


@dashboard_cli.command("rebuild")
@click.option("--organization", "organization_id", type=int, default=None, help="Only this organisation.")
def rebuild_command(organization_id: int | None) -> None:
    """Recount the daily rollups from the journal (after a bulk import or to repair)."""
    ids = (
        [organization_id]
        if organization_id is not None
        else list(db.session.execute(select(Organization.id).order_by(Organization.id)).scalars())
    )
    for org_id in ids:
        rollups.rebuild(org_id)
        db.session.commit()
        click.echo(f"organisation {org_id}: rollups rebuilt")


@dashboard_cli.command("seed")
@click.option("--entries", default=1_000_000, show_default=True, help="Journal entries to create.")
@click.option("--files", default=100_000, show_default=True, help="Files (one version each, no blob).")
@click.option("--members", default=20, show_default=True)
@click.option("--armoires", default=20, show_default=True)
def seed_command(entries: int, files: int, members: int, armoires: int) -> None:
    """Create a benchmark organisation (never in production: its files have no content)."""
    from flask import current_app

    from portal.dashboard.seed import seed

    if current_app.config.get("COFFRE_ENV") == "production":
        raise click.ClickException("benchmark data is refused in production")
    seeded = seed(entries=entries, files=files, members=members, armoires=armoires)
    click.echo(f"organisation {seeded.organization_id}: {entries} journal entries, {files} files")


def init_app(app: Flask) -> None:
    app.cli.add_command(dashboard_cli)
