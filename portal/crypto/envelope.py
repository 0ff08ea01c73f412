"""Envelope encryption services: data keys per file version, wrapped by a master key.

Services flush, never commit. The shred ledger is kept twice: in the database
(``registre_destructions``) and in an append-only file outside it (next to the master key,
COFFRE_SHRED_LEDGER_FILE). The file entry is appended and fsynced *before* the shredding
transaction commits, and a purge whose entry cannot be written is refused
(LedgerUnavailable): a destruction must never exist only in the database. A backup of the
database restored later comes back with an older ledger; the file still names every key
destroyed since, and ``apply_shred_ledger`` (which every restore runs first) destroys them
again. If the commit then fails, the file names a key that was not destroyed: the ledger
errs toward destruction (see docs/security.md).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import event, func, select, text, update
from sqlalchemy.orm import Session

from portal.crypto.errors import KeyConfigError, KeyShredded, KeyUnavailable, LedgerUnavailable
from portal.crypto.keys import LocalKeyProvider, canonical_context, fsync_dir, get_key_provider
from portal.crypto.models import DataKey, ShredRecord
from portal.database import SQLITE_WRITE_LOCKED, utcnow
from portal.extensions import db

log = logging.getLogger(__name__)

_SHREDDED = "coffre_shredded"


# ---------------------------------------------------------------------------- data keys


@dataclass(frozen=True)
class GeneratedKey:
    """A fresh data key and its wrapping, not yet stored: made while no transaction is open."""

    organization_id: int
    key: bytes = field(repr=False)
    wrapped: bytes = field(repr=False)
    master_key_id: str
    context: dict[str, str]


def generate_data_key(organization_id: int, context: dict[str, str]) -> GeneratedKey:
    """A data key bound to ``context``, without touching the database (a KMS call at most)."""
    canonical_context(context)
    if "org" in context and context["org"] != str(organization_id):
        raise ValueError("the encryption context names another organisation")
    key, wrapped, master_key_id = get_key_provider().generate_data_key(context)
    return GeneratedKey(organization_id, key, wrapped, master_key_id, dict(context))


# Any fixed 64-bit number: the PostgreSQL advisory lock between storing data keys and retiring.
_MASTER_KEY_LOCK = 0x636F_6666_7265_4B31


@functools.cache
def _sqlite_key_lock() -> Any:
    # Built once: every upload takes it.
    keys = DataKey.__table__
    return keys.update().where(keys.c.id == -1).values(id=keys.c.id)


def lock_master_keys(*, exclusive: bool) -> None:
    """Serialise storing a data key with retiring a master key version, across processes,
    until the end of the transaction.

    PostgreSQL: an advisory transaction lock, shared by the transactions that store keys,
    exclusive for a retirement, which therefore waits for every one in flight and holds new
    ones back until it commits. SQLite: the database write lock (a zero-row UPDATE takes
    it, unless the transaction began IMMEDIATE and holds it already, as requests that write
    and retirements do); a retirement whose snapshot went stale fails here rather than count
    keys it cannot see.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        db.session.execute(text(f"SELECT {function}(:key)"), {"key": _MASTER_KEY_LOCK})
    elif not db.session.connection().info.get(SQLITE_WRITE_LOCKED):
        db.session.execute(_sqlite_key_lock())


def _live_wrapping(generated: GeneratedKey) -> tuple[bytes, str]:
    """(wrapped key, master key id) to store for ``generated``, under the master key lock.

    The key was wrapped when the upload began, possibly minutes ago: a rotation and a
    retirement may have happened since, in another process. Under the master key lock, the
    keyring is re-read and the plaintext key (still in memory) is wrapped again under the
    current primary if it is not the one used, so a stored key always opens with the live
    keyring and no retirement can slip between this check and the commit.
    """
    provider = get_key_provider()
    wrapped, master_key_id = generated.wrapped, generated.master_key_id
    lock_master_keys(exclusive=False)
    if isinstance(provider, LocalKeyProvider):
        provider.reload()
        if master_key_id != provider.primary_id:
            wrapped, master_key_id = provider.wrap_under_primary(generated.key, generated.context)
            log.info("data key made under %s is stored wrapped under %s", generated.master_key_id, master_key_id)
    return wrapped, master_key_id


def save_data_key(generated: GeneratedKey) -> DataKey:
    """Store the wrapped half of ``generated`` (see ``_live_wrapping``); adds and flushes the row."""
    wrapped, master_key_id = _live_wrapping(generated)
    row = DataKey(
        organization_id=generated.organization_id,
        wrapped_key=wrapped,
        master_key_id=master_key_id,
        context=dict(generated.context),
    )
    db.session.add(row)
    db.session.flush()
    return row


@functools.cache
def _insert_key() -> Any:
    keys = DataKey.__table__
    return keys.insert().returning(keys.c.id)


def insert_data_key(generated: GeneratedKey) -> int:
    """``save_data_key`` as one Core insert, returning the row's id and adding nothing to the
    session (an upload's final transaction, which needs only the id)."""
    wrapped, master_key_id = _live_wrapping(generated)
    values = {
        "uid": secrets.token_hex(16),
        "organization_id": generated.organization_id,
        "wrapped_key": wrapped,
        "master_key_id": master_key_id,
        "context": dict(generated.context),
        "created_at": utcnow(),
        "shredded_at": None,
    }
    return db.session.execute(_insert_key(), values).scalar_one()


def new_data_key(organization_id: int, context: dict[str, str]) -> tuple[DataKey, bytes]:
    """Create a data key bound to ``context``; adds and flushes the row, returns it with the key."""
    generated = generate_data_key(organization_id, context)
    return save_data_key(generated), generated.key


def open_data_key(data_key: DataKey, context: dict[str, str]) -> bytes:
    """The plaintext data key, if ``context`` is the one it was created with."""
    if data_key.wrapped_key is None or data_key.shredded_at is not None:
        raise KeyShredded(f"data key {data_key.id} was destroyed")
    if data_key.context != context:
        raise KeyUnavailable("the data key belongs to another file or version")
    return get_key_provider().unwrap(data_key.wrapped_key, data_key.master_key_id, context)


def shred_data_key(data_key: DataKey, *, file_id: int | None, version_id: int | None, reason: str) -> None:
    """Destroy the wrapped key (crypto-shredding) and record it in the shred ledger."""
    shred_data_keys([(data_key, file_id, version_id)], reason=reason)


def shred_data_keys(items: Sequence[tuple[DataKey, int | None, int | None]], *, reason: str) -> None:
    """Destroy wrapped keys, given as (data key, file id, version id), and record them.

    The ledger file entries are written and fsynced first, before anything changes in the
    session: if they cannot be, LedgerUnavailable is raised and nothing is destroyed. A
    destruction only the database remembers would be undone by restoring an older backup.
    """
    if not items:
        return
    if any(data_key.id is None for data_key, _file, _version in items):
        db.session.flush()
    now = utcnow()
    entries = [
        ShredRecord(
            organization_id=data_key.organization_id,
            data_key_id=data_key.id,
            data_key_uid=data_key.uid,
            file_id=file_id,
            version_id=version_id,
            shredded_at=data_key.shredded_at or now,
            reason=reason[:200],
        )
        for data_key, file_id, version_id in items
    ]
    write_ledger([_ledger_line(entry) for entry in entries])
    known = set(
        db.session.execute(
            select(ShredRecord.data_key_uid).where(ShredRecord.data_key_uid.in_([e.data_key_uid for e in entries]))
        ).scalars()
    )
    for (data_key, _file, _version), entry in zip(items, entries, strict=True):
        data_key.wrapped_key = None
        data_key.shredded_at = entry.shredded_at
        if entry.data_key_uid not in known:
            db.session.add(entry)
    db.session.flush()
    db.session.info[_SHREDDED] = True


# ---------------------------------------------------------------------------- shred ledger


def shred_ledger_path() -> Path:
    configured = current_app.config.get("COFFRE_SHRED_LEDGER_FILE")
    if configured:
        return Path(configured)
    master = current_app.config.get("COFFRE_MASTER_KEY_FILE")
    base = Path(master).parent if master else Path(current_app.instance_path)
    return base / "shred-ledger.jsonl"


def _ledger_line(entry: ShredRecord) -> dict[str, Any]:
    return {
        "uid": entry.data_key_uid,
        "data_key_id": entry.data_key_id,
        "org": entry.organization_id,
        "file": entry.file_id,
        "version": entry.version_id,
        "at": entry.shredded_at.isoformat(),
        "reason": entry.reason,
    }


def _append_ledger(path: Path, lines: list[dict[str, Any]]) -> None:
    """Append ``lines`` and fsync them; a new file's (and new directory's) entry is fsynced too."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(path.parent.parent)
    payload = b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)
    flags = os.O_RDWR | os.O_APPEND
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
    except FileExistsError:
        fd = os.open(path, flags)
        created = False
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A torn last line (crash mid-append) must not swallow the next entry.
            payload = b"\n" + payload
        written = os.write(fd, payload)
        if written != len(payload):
            # Regular files only write short when the disk or a size limit is reached.
            raise OSError(errno.ENOSPC, f"short write to the shred ledger ({written} of {len(payload)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def write_ledger(lines: list[dict[str, Any]]) -> None:
    """Make ``lines`` durable in the ledger file, or raise LedgerUnavailable."""
    path = shred_ledger_path()
    try:
        _append_ledger(path, lines)
    except OSError as error:
        raise LedgerUnavailable(f"the shred ledger {path} cannot be written: {error.strerror or error}") from None


@event.listens_for(Session, "after_commit")
def _checkpoint_after_shred(session: Session) -> None:
    # The ledger file was written before the commit (shred_data_keys); only the WAL is left.
    if session.info.pop(_SHREDDED, False):
        _checkpoint_sqlite(session)


def _checkpoint_sqlite(session: Session) -> None:
    """Push a shred out of SQLite's WAL and truncate it.

    Until a checkpoint, the WAL still holds the pages written before the shred, wrapped key
    included: the key would stay on disk (and in a file-level backup) after the purge.
    """
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            # The raw driver connection (autocommit): a checkpoint inside a transaction cannot truncate.
            raw = connection.connection.driver_connection
            raw.execute("PRAGMA busy_timeout = 2000")
            try:
                busy, _log_frames, _done = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.execute("PRAGMA busy_timeout = 30000")
        if busy:
            log.warning("WAL checkpoint after a shred was blocked by readers; it completes at the next checkpoint")
    except Exception:
        log.exception("WAL checkpoint after a shred failed; the wrapped key stays in the WAL until the next one")


@event.listens_for(Session, "after_rollback")
def _forget_shreds(session: Session) -> None:
    session.info.pop(_SHREDDED, None)


def read_ledger_file(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or shred_ledger_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if isinstance(entry.get("uid"), str):
                entries.append(entry)
                continue
        except (ValueError, AttributeError):
            pass
        # A torn last line (crash while appending) must not stop a restore.
        log.warning("skipping unreadable line %d of the shred ledger %s", number, path)
    return entries


def apply_shred_ledger() -> int:
    """Destroy again every key the ledger names (database table and file); returns how many
    live wrapped keys were destroyed. Run first by every restore; flushes, the caller commits."""
    from datetime import datetime

    file_entries = read_ledger_file()
    known = set(db.session.execute(select(ShredRecord.data_key_uid)).scalars())
    for entry in file_entries:
        if entry["uid"] in known:
            continue
        db.session.add(
            ShredRecord(
                organization_id=int(entry.get("org") or 0),
                data_key_id=int(entry.get("data_key_id") or 0),
                data_key_uid=entry["uid"],
                file_id=entry.get("file"),
                version_id=entry.get("version"),
                shredded_at=datetime.fromisoformat(entry["at"]) if entry.get("at") else utcnow(),
                reason=str(entry.get("reason") or "ledger")[:200],
            )
        )
        known.add(entry["uid"])
    db.session.flush()
    now = utcnow()
    result = db.session.execute(
        update(DataKey)
        .where(DataKey.uid.in_(select(ShredRecord.data_key_uid)), DataKey.wrapped_key.is_not(None))
        .values(wrapped_key=None, shredded_at=func.coalesce(DataKey.shredded_at, now))
        .execution_options(synchronize_session=False)
    )
    destroyed = result.rowcount or 0
    # Entries only in the database (the file append failed, or the file was lost) go back to the file.
    file_uids = {entry["uid"] for entry in file_entries}
    missing = [
        _ledger_line(record)
        for record in db.session.execute(select(ShredRecord).order_by(ShredRecord.id)).scalars()
        if record.data_key_uid not in file_uids
    ]
    if missing:
        _append_ledger(shred_ledger_path(), missing)
    db.session.expire_all()
    return destroyed


# ---------------------------------------------------------------------------- rotation


def rotate_master_key() -> str:
    """Make a new master key version primary (local), or return the configured KMS key.
    Existing data keys stay readable; ``rewrap_all`` then moves them to the new primary."""
    provider = get_key_provider()
    if isinstance(provider, LocalKeyProvider):
        return provider.rotate()
    return provider.primary_id


def rewrap_all(batch_size: int = 500, on_batch: Callable[[int], None] | None = None) -> int:
    """Rewrap every live data key not under the primary master key; content is untouched.

    ``on_batch`` runs after each flushed batch (the CLI commits there). Each row is updated
    only if it is still live and unchanged, so a purge that commits meanwhile is never undone.
    Keys that cannot be unwrapped are left as they are and logged; returns the count rewrapped.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    provider = get_key_provider()
    primary = provider.primary_id
    rewrapped = 0
    last_id = 0
    while True:
        rows = db.session.execute(
            select(DataKey.id, DataKey.wrapped_key, DataKey.master_key_id, DataKey.context)
            .where(DataKey.id > last_id, DataKey.wrapped_key.is_not(None), DataKey.master_key_id != primary)
            .order_by(DataKey.id)
            .limit(batch_size)
        ).all()
        if not rows:
            break
        done = 0
        for row in rows:
            last_id = row.id
            try:
                wrapped, master_key_id = provider.rewrap(row.wrapped_key, row.master_key_id, row.context)
            except KeyUnavailable as error:
                log.error("data key %s not rewrapped: %s", row.id, error)
                continue
            result = db.session.execute(
                update(DataKey)
                .where(
                    DataKey.id == row.id,
                    DataKey.master_key_id == row.master_key_id,
                    DataKey.wrapped_key.is_not(None),
                )
                .values(wrapped_key=wrapped, master_key_id=master_key_id)
                .execution_options(synchronize_session=False)
            )
            done += result.rowcount or 0
        db.session.flush()
        rewrapped += done
        if on_batch is not None:
            on_batch(done)
    db.session.expire_all()
    return rewrapped


def keys_in_use(master_key_id: str) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(DataKey)
        .where(DataKey.master_key_id == master_key_id, DataKey.wrapped_key.is_not(None))
    ).scalar_one()


def retire_master_key(version: int) -> None:
    """Erase a local master key version; refused while a live data key still uses it.

    Takes the master key lock until the caller commits, which it does at once (the CLI).

    Retiring also makes every backup whose keys were wrapped under that version unreadable:
    rotate + rewrap + retire is the way to cut off old backups wholesale.
    """
    provider = get_key_provider()
    if not isinstance(provider, LocalKeyProvider):
        raise KeyConfigError("only local master key versions are retired here; KMS keys are managed in KMS")
    # Uploads store their key under this lock: once it is ours, every upload that used the
    # version is counted below, and later ones re-read the keyring and wrap under the primary.
    lock_master_keys(exclusive=True)
    provider.reload()
    if provider.primary_id == f"local:{version}":
        raise KeyConfigError(f"master key version {version} is the primary: rotate first")
    in_use = keys_in_use(f"local:{version}")
    if in_use:
        raise KeyConfigError(f"master key version {version} still wraps {in_use} data keys: run `keys rotate` first")
    provider.retire(version)


def key_status() -> dict[str, Any]:
    rows = db.session.execute(
        select(DataKey.master_key_id, DataKey.wrapped_key.is_(None), func.count()).group_by(
            DataKey.master_key_id, DataKey.wrapped_key.is_(None)
        )
    ).all()
    by_master: dict[str, int] = {}
    shredded = 0
    for master_key_id, is_shredded, count in rows:
        if is_shredded:
            shredded += count
        else:
            by_master[master_key_id] = by_master.get(master_key_id, 0) + count
    provider = get_key_provider()
    status: dict[str, Any] = {"primary": provider.primary_id, "live_keys": by_master, "shredded_keys": shredded}
    if isinstance(provider, LocalKeyProvider):
        status["keyring"] = provider.versions()
        status["from_env"] = provider.from_env
    status["ledger_entries"] = db.session.execute(select(func.count()).select_from(ShredRecord)).scalar_one()
    return status
