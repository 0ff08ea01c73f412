"""``flask --app wsgi keys ...``: master key rotation, retirement, status and the shred ledger."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from portal.audit import actions
from portal.audit.context import Actor
from portal.audit.services import record
from portal.crypto import envelope
from portal.crypto.errors import CryptoError
from portal.database import write_transaction
from portal.extensions import db

keys_group = AppGroup("keys", help="Master keys and data keys (encryption at rest).")


def _journal(action: str, details: dict) -> None:
    """Journal a key operation on the platform chain, in the caller's transaction.

    The action codes are added to portal/audit/actions.py at integration; until they are,
    the operation is only reported on the terminal and in the log.
    """
    if action in actions.ACTIONS:
        record(action, Actor.system(None), target_type="master_key", details=details)


@keys_group.command("rotate")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1))
@click.option("--rewrap-only", is_flag=True, help="Do not add a new version; finish an interrupted rewrap.")
def rotate_command(batch_size: int, rewrap_only: bool) -> None:
    """Introduce a new master key version and rewrap every data key under it.

    Content is never re-encrypted. Old versions stay in the keyring, so files remain readable
    during and after the run; retire them afterwards with `keys retire VERSION`.
    """
    try:
        if rewrap_only:
            primary = envelope.get_key_provider().primary_id
        else:
            primary = envelope.rotate_master_key()
            click.echo(f"New primary master key: {primary}")
        total = 0

        def commit_batch(count: int) -> None:
            nonlocal total
            db.session.commit()
            total += count
            click.echo(f"  rewrapped {total} data keys so far")

        envelope.rewrap_all(batch_size=batch_size, on_batch=commit_batch)
        left = sum(count for master, count in envelope.key_status()["live_keys"].items() if master != primary)
        _journal("keys.rotated", {"primary": primary, "rewrapped": total, "not_rewrapped": left})
        db.session.commit()
    except CryptoError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    click.echo(f"Rewrapped {total} data keys under {primary}.")
    if left:
        raise click.ClickException(f"{left} data keys could not be rewrapped (see the log); nothing was retired")


@keys_group.command("retire")
@click.argument("version", type=click.IntRange(min=1))
def retire_command(version: int) -> None:
    """Erase a master key version from the keyring (refused while data keys use it)."""
    try:
        # On SQLite, begin IMMEDIATE: the count of keys under the version must not come from
        # a snapshot older than an upload committing meanwhile.
        with write_transaction():
            envelope.retire_master_key(version)
            _journal("keys.retired", {"version": version})
            db.session.commit()
    except CryptoError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    click.echo(f"Master key version {version} retired.")


@keys_group.command("status")
def status_command() -> None:
    """Which master keys wrap how many live data keys."""
    try:
        status = envelope.key_status()
    except CryptoError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(status, indent=2, sort_keys=True))


@keys_group.command("apply-ledger")
def apply_ledger_command() -> None:
    """Destroy again every data key named in the shred ledger: run first after any restore."""
    try:
        destroyed = envelope.apply_shred_ledger()
        _journal("keys.ledger_applied", {"destroyed": destroyed})
        db.session.commit()
    except (CryptoError, OSError) as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    click.echo(f"Shred ledger applied: {destroyed} data keys destroyed again.")


def init_app(app: Flask) -> None:
    app.cli.add_command(keys_group)
