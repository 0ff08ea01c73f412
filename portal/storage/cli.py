"""``flask storage migrate --to local|s3``: move every blob to another store (see migrate.py)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from portal.database import write_transaction
from portal.extensions import db
from portal.storage import migrate
from portal.storage.base import BACKENDS

storage_cli = AppGroup("storage", help="Blob stores: migration between the local directory and S3.")


@storage_cli.command("migrate")
@click.option("--to", "target", type=click.Choice(BACKENDS), required=True, help="The store to move every blob to.")
def migrate_command(target: str) -> None:
    """Copy every blob to the target store, verify it, switch its row, delete the source copy."""
    from portal.storage.blobs import get_blob_store

    target_store = get_blob_store(target)
    moved = failed = 0
    for item in migrate.pending_versions(target):
        source_store = get_blob_store(item.source)
        try:
            size = migrate.copy_verified(source_store, target_store, item.key)
        except FileNotFoundError:
            click.echo(f"missing {item.key} (version {item.version_id}): run documents check-storage", err=True)
            failed += 1
            continue
        except (OSError, migrate.CopyMismatchError) as error:
            click.echo(f"failed {item.key} (version {item.version_id}): {error}", err=True)
            failed += 1
            continue
        with write_transaction():
            switched = migrate.switch_pointer(item, target)
            db.session.commit()
        if switched:
            try:
                source_store.delete(item.key)  # only after the commit: until then the row reads the source
            except OSError as error:
                click.echo(f"left {item.key} in {item.source} ({error}): check-storage --fix removes it", err=True)
            moved += 1
            click.echo(f"moved {item.key} ({size} bytes) {item.source} -> {target}")
        elif not migrate.referenced_in(item.key, target):
            # The row was purged meanwhile; when another run switched it, the copy is its blob.
            target_store.delete(item.key)
    click.echo(f"{moved} blob(s) moved to {target}, {failed} failed.")
    if failed:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(storage_cli)
