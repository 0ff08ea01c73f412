"""``flask journal verify`` and ``flask journal checkpoint``."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from portal.audit.services import chain_id_for
from portal.audit.verification import Problem, chain_ids, checkpoint_advanced_chains, verify_chain
from portal.database import write_transaction
from portal.extensions import db

journal_cli = AppGroup("journal", help="Verify and anchor the activity journal's hash chains.")


@journal_cli.command("verify")
@click.option("--organization", "organization_id", type=int, default=None, help="Verify one organisation's chain.")
@click.option("--all", "verify_all", is_flag=True, help="Verify every chain (the default).")
def verify_command(organization_id: int | None, verify_all: bool) -> None:
    """Verify the chains; exit code 1 and the first problem when one is broken."""
    if organization_id is not None and verify_all:
        raise click.UsageError("--organization and --all exclude each other")
    chains = [chain_id_for(organization_id)] if organization_id is not None else chain_ids()
    broken = 0
    for chain_id in chains:
        result = verify_chain(chain_id)
        # Each chain in its own short transaction: on SQLite a transaction holds the write lock.
        db.session.rollback()
        if result.ok:
            click.echo(f"chain {chain_id}: OK, {result.entries_checked} entries verified (head seq {result.head_seq})")
            continue
        broken += 1
        assert result.problem is not None
        click.echo(f"chain {chain_id}: BROKEN — {_describe(result.problem)}", err=True)
    if not chains:
        click.echo("no journal chain yet")
    if broken:
        sys.exit(1)


@journal_cli.command("checkpoint")
def checkpoint_command() -> None:
    """Verify, then anchor, every chain that advanced; exit code 1 when one is broken."""
    # The refusals are journalled: on SQLite the transaction must hold the write lock first.
    with write_transaction():
        run = checkpoint_advanced_chains()
        db.session.commit()
    for result in run.refused:
        assert result.problem is not None
        click.echo(
            f"chain {result.chain_id}: NOT CHECKPOINTED, BROKEN — {_describe(result.problem)}",
            err=True,
        )
    click.echo(f"{run.written} checkpoint(s) written")
    if run.refused:
        sys.exit(1)


def _describe(problem: Problem) -> str:
    where = f" at seq {problem.seq}" if problem.seq is not None else ""
    entry = f" (entry id {problem.entry_id})" if problem.entry_id is not None else ""
    return f"{problem.kind}{where}{entry}: {problem.message}"


def init_app(app: Flask) -> None:
    app.cli.add_command(journal_cli)
