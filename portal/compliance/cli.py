"""``flask compliance verify-certificate FILE``: check a destruction certificate offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup

compliance_cli = AppGroup("compliance", help="Retention, legal holds and destruction certificates.")


@compliance_cli.command("verify-certificate")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def verify_certificate_command(path: Path) -> None:
    """Check FILE's Ed25519 signature against this instance's key; exit code 1 when it fails.

    Needs only the instance's signing key (no server, no network); the outcome is journalled
    in the certificate's organisation when its database is reachable."""
    from portal.audit.context import Actor
    from portal.audit.services import record
    from portal.compliance.certificates import verify_text
    from portal.crypto.signing import SignatureInvalid
    from portal.database import write_transaction
    from portal.extensions import db

    try:
        body = verify_text(path.read_bytes())
    except SignatureInvalid as error:
        click.echo(f"{path}: INVALID — {error}", err=True)
        sys.exit(1)
    files = body.get("files", [])
    click.echo(
        f"{path}: OK — certificate {body.get('certificate_id')} of organisation "
        f"{(body.get('organization') or {}).get('id')}, {len(files)} file(s), issued {body.get('issued_at')}"
    )
    for entry in files:
        click.echo(f"  file {entry.get('id')} {entry.get('name')!r} sha256={entry.get('sha256')}")
    organization_id = (body.get("organization") or {}).get("id")
    try:
        with write_transaction():
            record(
                "certificate.verified",
                Actor.system(organization_id),
                target_type="certificate",
                target_id=body.get("certificate_id"),
                details={"ok": True},
            )
            db.session.commit()
    except Exception as error:  # the signature check stands on its own; the journal is a bonus offline
        db.session.rollback()
        click.echo(f"(not journalled: {type(error).__name__})", err=True)


def init_app(app: Flask) -> None:
    app.cli.add_command(compliance_cli)
