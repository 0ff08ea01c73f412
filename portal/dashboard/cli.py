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


def init_app(app: Flask) -> None:
    app.cli.add_command(dashboard_cli)
