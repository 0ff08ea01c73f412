"""``flask documents …``: storage consistency and trash purge."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from portal.documents.services import consistency
from portal.extensions import db

documents_cli = AppGroup("documents", help="Documents: storage consistency and trash.")


@documents_cli.command("check-storage")
@click.option("--fix", is_flag=True, help="Delete orphan blobs and flag versions whose blob is missing.")
@click.option(
    "--grace-seconds", default=3600, show_default=True, help="Ignore blobs younger than this (uploads in flight)."
)
def check_storage_command(fix: bool, grace_seconds: int) -> None:
    """List blobs without a version row, and version rows without a blob."""
    from portal.storage.base import StorageUnavailableError

    try:
        report = consistency.check_storage(fix=fix, grace_seconds=grace_seconds)
    except StorageUnavailableError as error:
        db.session.rollback()
        click.echo(f"blob store unavailable ({error}): nothing checked, run again once it answers")
        raise SystemExit(1) from None
    for key in report.orphan_blobs:
        click.echo(f"orphan blob{' (deleted)' if fix else ''}: {key}")
    for key in report.recent_blobs_skipped:
        click.echo(f"recent blob without row (skipped, may be an upload in flight): {key}")
    for file_id, number, _version_id in report.missing_blobs:
        click.echo(f"missing blob: file {file_id} version {number}{' (marked unavailable)' if fix else ''}")
    if fix:
        db.session.commit()
        click.echo(f"temporary files swept: {report.temp_swept}")
        if report.abandoned_aborted or report.abandoned_waiting:
            click.echo(
                f"abandoned multipart uploads aborted: {report.abandoned_aborted}, "
                f"still waiting for the store: {report.abandoned_waiting}"
            )
    click.echo(f"{len(report.orphan_blobs)} orphan blob(s), {len(report.missing_blobs)} missing blob(s).")
    if (report.orphan_blobs or report.missing_blobs) and not fix:
        raise SystemExit(1)


@documents_cli.command("purge-trash")
def purge_trash_command() -> None:
    """Purge (crypto-shred) files left in the trash past COFFRE_TRASH_RETENTION_DAYS."""
    from portal.documents.jobs import purge_trash_now

    click.echo(f"{purge_trash_now()} blob(s) destroyed.")


def init_app(app: Flask) -> None:
    app.cli.add_command(documents_cli)
