"""Operator disaster recovery: ``backups export-all DIR`` and ``backups restore-all DIR``.

An export holds every table (one JSON-lines file each, so it restores onto SQLite or
PostgreSQL alike), the blobs as they are (ciphertext), the journal checkpoints and the
shred ledger, and an ``export.json`` listing every file with its sha256, signed with the
instance's Ed25519 journal key. It holds no secret: the master key, the journal signing
key and the live shred ledger stay where the operator keeps them (see docs/operations.md).

A restore checks the whole export before writing anything, needs an empty database and
an empty storage directory, loads the rows, copies the blobs back, then replays the shred
ledger (the live one and the exported one): a key destroyed after the export, or before
it, stays destroyed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from flask import current_app
from sqlalchemy import func, select, text

from portal.backups.repository import canonical
from portal.extensions import db

FORMAT = 1


class ExportError(Exception):
    """An export directory that cannot be written or restored; nothing was changed."""


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__dt": value.isoformat()}
    if isinstance(value, date):  # dashboard days, billing periods
        return {"__d": value.isoformat()}
    if isinstance(value, bytes | memoryview):
        return {"__b64": base64.b64encode(bytes(value)).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "__dt" in value:
            return datetime.fromisoformat(value["__dt"])
        if "__d" in value:
            return date.fromisoformat(value["__d"])
        if "__b64" in value:
            return base64.b64decode(value["__b64"])
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "export.json")


def export_all(target: Path) -> dict[str, Any]:
    """Write the whole instance into ``target`` (new or empty); returns the signed listing."""
    from portal.audit.checkpoints import checkpoint_path, key_id_of, signing_key
    from portal.crypto.envelope import shred_ledger_path

    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise ExportError(f"{target} is not empty")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    # One read snapshot for every table (PostgreSQL: repeatable read would be stricter;
    # the operator runs this with the portal stopped or read-only, see the runbook).
    (target / "db").mkdir(mode=0o700)
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(select(table).order_by(*table.primary_key.columns)).mappings()
        count = 0
        with (target / "db" / f"{table.name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                count += 1
        counts[table.name] = count
    db.session.rollback()
    storage = Path(current_app.config["COFFRE_STORAGE_DIR"])
    if storage.is_dir():
        shutil.copytree(storage, target / "blobs", ignore=shutil.ignore_patterns("tmp"))
    for source, name in ((checkpoint_path(), "journal_checkpoints.jsonl"), (shred_ledger_path(), "shred-ledger.jsonl")):
        if source.is_file():
            shutil.copy2(source, target / name)
    listing = {
        "format": FORMAT,
        "tables": counts,
        "files": {str(p.relative_to(target)): _sha256(p) for p in _files(target)},
    }
    key = signing_key()
    envelope = {
        "body": listing,
        "key_id": key_id_of(key.public_key()),
        "signature": base64.b64encode(key.sign(canonical(listing))).decode(),
    }
    (target / "export.json").write_bytes(canonical(envelope))
    for path in [*_files(target), target / "export.json"]:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    return listing


def check_export(source: Path) -> dict[str, Any]:
    """The export's listing, once its signature and every file's hash are checked."""
    from portal.audit.checkpoints import signing_key

    try:
        envelope = json.loads((source / "export.json").read_bytes())
        listing = envelope["body"]
        signature = base64.b64decode(envelope["signature"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ExportError(f"{source}/export.json is missing or unreadable: {error}") from None
    try:
        signing_key().public_key().verify(signature, canonical(listing))
    except InvalidSignature:
        raise ExportError("export.json is not signed by this instance's journal key") from None
    for name, expected in sorted(listing["files"].items()):
        path = source / name
        if not path.is_file():
            raise ExportError(f"{name} is missing from the export")
        if _sha256(path) != expected:
            raise ExportError(f"{name} does not match its hash in export.json")
    return listing


def _reset_sequences() -> None:
    if db.session.get_bind().dialect.name != "postgresql":
        return
    for table in db.metadata.sorted_tables:
        columns = list(table.primary_key.columns)
        if len(columns) != 1 or not columns[0].autoincrement or columns[0].type.python_type is not int:
            continue
        name = columns[0].name
        sequence = db.session.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": f'"{table.name}"', "column": name}
        ).scalar()
        if sequence:
            top = db.session.execute(select(func.max(table.c[name]))).scalar()
            db.session.execute(
                text("SELECT setval(:seq, :value, :called)"),
                {"seq": sequence, "value": top or 1, "called": top is not None},
            )


def restore_all(source: Path) -> dict[str, int]:
    """Load an export into an empty instance (see the module docstring); commits."""
    from portal.audit.checkpoints import checkpoint_path
    from portal.crypto.envelope import apply_shred_ledger, read_ledger_file, shred_ledger_path, write_ledger
    from portal.organizations.models import Organization

    source = Path(source)
    listing = check_export(source)
    if db.session.execute(select(func.count()).select_from(Organization)).scalar():
        raise ExportError("the database is not empty: restore-all only loads into a new instance")
    storage = Path(current_app.config["COFFRE_STORAGE_DIR"])
    if storage.is_dir() and any(p.is_file() for p in storage.rglob("*")):
        raise ExportError(f"the storage directory {storage} is not empty")
    tables = db.metadata.sorted_tables
    order = {table.name: index for index, table in enumerate(tables)}
    deferred: list[tuple[Any, str, Any, Any]] = []
    for table in tables:
        path = source / "db" / f"{table.name}.jsonl"
        if not path.is_file():
            continue
        # A reference to a table loaded later (a use_alter cycle) is set once that table is in.
        later = [
            column.name
            for column in table.columns
            for fk in column.foreign_keys
            if order.get(fk.column.table.name, -1) >= order[table.name] and fk.column.table.name != table.name
        ]
        batch = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = {k: _decode(v) for k, v in json.loads(line).items()}
                for name in later:
                    if row.get(name) is not None:
                        deferred.append((table, name, row[name], {c.name: row[c.name] for c in table.primary_key}))
                        row[name] = None
                batch.append(row)
                if len(batch) >= 1000:
                    db.session.execute(table.insert(), batch)
                    batch = []
        if batch:
            db.session.execute(table.insert(), batch)
    for table, name, value, key in deferred:
        db.session.execute(table.update().where(*(table.c[k] == v for k, v in key.items())).values({name: value}))
    _reset_sequences()
    blobs = source / "blobs"
    if blobs.is_dir():
        shutil.copytree(blobs, storage, dirs_exist_ok=True)
    checkpoints = checkpoint_path()
    if (source / "journal_checkpoints.jsonl").is_file() and not checkpoints.exists():
        checkpoints.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "journal_checkpoints.jsonl", checkpoints)
    # The exported ledger's lines that the live ledger lacks go back into it, then the ledger
    # (the live one, which outlived the wipe, and the exported one) is replayed.
    live = {entry["uid"] for entry in read_ledger_file(shred_ledger_path())}
    exported = [e for e in read_ledger_file(source / "shred-ledger.jsonl") if e["uid"] not in live]
    if exported:
        write_ledger(exported)
    destroyed = apply_shred_ledger()
    db.session.commit()
    return {"tables": len(listing["tables"]), "rows": sum(listing["tables"].values()), "destroyed": destroyed}
