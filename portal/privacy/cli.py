"""``flask privacy export`` and ``flask privacy pseudonymise`` for operators."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from portal.audit.context import Actor
from portal.auth.models import User
from portal.database import write_transaction
from portal.extensions import db
from portal.privacy import export, pseudonymise

privacy_cli = AppGroup("privacy", help="Personal data requests: a member's export, a departed member's pseudonym.")


def _member(user_id: int) -> User:
    member = db.session.get(User, user_id)
    if member is None:
        raise click.ClickException(f"no member with id {user_id}")
    return member


@privacy_cli.command("export")
@click.option("--user", "user_id", type=int, required=True, help="The member's id.")
def export_command(user_id: int) -> None:
    """Write the member's ZIP to standard output (pipe it to an encrypting tool or a host).

    Nothing is written to disk by the command itself: the archive streams as it is built.
    """
    if sys.stdout.isatty():
        raise click.UsageError("the archive is binary: redirect or pipe standard output")
    with write_transaction():
        member = _member(user_id)
        actor = Actor.system(member.organization_id)
        export.record_export(member, actor, channel="cli")
        db.session.commit()
    out = sys.stdout.buffer
    for chunk in export.stream_zip(user_id, actor):
        out.write(chunk)
    out.flush()


@privacy_cli.command("pseudonymise")
@click.option("--user", "user_id", type=int, required=True, help="The departed member's id.")
def pseudonymise_command(user_id: int) -> None:
    """Replace a deactivated member's name and address everywhere; the journal keeps verifying."""
    with write_transaction():
        member = _member(user_id)
        try:
            result = pseudonymise.pseudonymise(member, Actor.system(member.organization_id))
        except pseudonymise.MemberStillActiveError as error:
            raise click.ClickException("the member is still active: deactivate them first") from error
        except pseudonymise.AlreadyPseudonymisedError as error:
            raise click.ClickException("the member is already pseudonymised") from error
        db.session.commit()
    click.echo(f"member {user_id} is now {result.pseudonym.name}; {result.journal_entries} journal entries relabelled")


def init_app(app: Flask) -> None:
    app.cli.add_command(privacy_cli)
