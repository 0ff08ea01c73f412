"""``flask backups verify ID | --all`` and ``flask backups run``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from portal.audit.context import Actor
from portal.backups import services, verification
from portal.backups.models import Backup
from portal.database import write_transaction
from portal.extensions import db

backups_cli = AppGroup("backups", help="Take and verify backups (sauvegardes).")


@backups_cli.command("verify")
@click.argument("backup_id", type=int, required=False)
@click.option("--all", "verify_all", is_flag=True, help="Verify every finished backup.")
def verify_command(backup_id: int | None, verify_all: bool) -> None:
    """Re-read every object of a backup; exit code 1 naming each bad object."""
    if (backup_id is None) == (not verify_all):
        raise click.UsageError("give a backup id or --all")
    query = select(Backup.id).where(Backup.path.is_not(None)).order_by(Backup.id)
    if backup_id is not None:
        query = select(Backup.id).where(Backup.id == backup_id)
    ids = list(db.session.execute(query).scalars())
    db.session.rollback()
    if not ids:
        raise click.ClickException(f"no backup {backup_id}" if backup_id is not None else "no backup to verify")
    bad = 0
    for current in ids:
        with write_transaction():
            backup = db.session.get(Backup, current)
            assert backup is not None
            result = verification.verify_backup(backup)
            db.session.commit()
        if result.ok:
            click.echo(f"backup {current}: OK, {result.checked} objects verified")
            continue
        bad += 1
        for problem in result.problems:
            click.echo(f"backup {current}: BAD — {problem}", err=True)
    if bad:
        sys.exit(1)


@backups_cli.command("run")
@click.option("--organization", "organization_id", type=int, required=True)
def run_command(organization_id: int) -> None:
    """Take a backup of one organisation now (trigger ``manuel``, no user)."""
    backup = services.backup_now(Actor.system(organization_id), "manuel")
    click.echo(f"backup {backup.id}: {backup.status} {backup.summary}")
    if backup.status != "reussie":
        sys.exit(1)


@backups_cli.command("export-all")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_all_command(directory: Path) -> None:
    """Export the whole instance (every table, the blobs, checkpoints, shred ledger) into DIRECTORY."""
    from portal.backups.instance import ExportError, export_all

    try:
        listing = export_all(directory)
    except ExportError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"exported {sum(listing['tables'].values())} rows and {len(listing['files'])} files to {directory}")


@backups_cli.command("restore-all")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
def restore_all_command(directory: Path) -> None:
    """Load an export into a new, empty instance, then replay the shred ledger."""
    from portal.audit.services import record
    from portal.backups.instance import ExportError, restore_all

    try:
        with write_transaction():
            result = restore_all(directory)
            record("keys.ledger_applied", Actor.system(None), target_type="master_key", details=result)
            db.session.commit()
    except ExportError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    click.echo(
        f"restored {result['rows']} rows; shred ledger replayed: {result['destroyed']} data keys destroyed again"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(backups_cli)
