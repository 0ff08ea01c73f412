"""Backups: taking them (incremental). Verifying them is ``verification``, restoring from
them as new versions ``restores``.

A backup runs in three steps so no transaction is open while blobs are copied:
  1. read the organisation's rows into plain values (one read transaction, then ended);
  2. copy each blob's ciphertext into the repository, named by its sha256 (a blob whose
     storage key the previous manifest already names is not read again: blobs are
     immutable), and each still-wrapped data key;
  3. write the manifest's parts, then the signed top manifest naming them (``manifests``),
     then mark the row ``reussie`` and journal ``backup.created``.
A backup killed before 3 leaves its row ``en_cours`` with no manifest: nothing claims success.
"""

from __future__ import annotations

import base64
import errno
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import chain_id_for, record
from portal.backups import manifests
from portal.backups.manifests import Manifest
from portal.backups.models import Backup
from portal.backups.repository import ManifestError, Repository, get_repository
from portal.database import utcnow, write_transaction
from portal.extensions import db

logger = logging.getLogger(__name__)


class BackupError(Exception):
    def __init__(self, message: str, status: int = 409, problem_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # The API's problem ``type`` when the refusal has a stable one of its own.
        self.problem_type = problem_type


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


# Members are backed up with their roles, never their secrets.
_USER_SECRETS = frozenset({"password_hash", "totp_secret_encrypted", "totp_pending_encrypted", "totp_last_step"})


# ---------------------------------------------------------------------------- taking a backup


def start_backup(actor: Actor, trigger: str) -> Backup:
    """Add the row (``en_cours``); flushes. The caller commits, then submits ``run_backup``."""
    backup = Backup(
        organization_id=actor.organization_id, trigger=trigger, created_by_id=actor.user_id, status="en_cours"
    )
    db.session.add(backup)
    db.session.flush()
    return backup


def _previous_objects(
    repository: Repository, organization_id: int, backup_id: int
) -> tuple[dict[str, str], dict[str, int]]:
    """storage key -> object hash, and -> size, from the newest successful manifest (its index part
    only, in format 2): a blob already backed up is neither read, hashed nor stat'ed again."""
    previous = db.session.execute(
        select(Backup.path)
        .where(
            Backup.organization_id == organization_id,
            Backup.id != backup_id,
            Backup.path.is_not(None),
            Backup.status.in_(("reussie", "verifiee")),
        )
        .order_by(Backup.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if previous is None:
        return {}, {}
    try:
        return Manifest.load(repository, previous).blobs()
    except ManifestError:
        return {}, {}


def _snapshot(organization_id: int) -> dict[str, Any]:
    from portal.audit.checkpoints import read_checkpoints
    from portal.audit.models import AuditEntry
    from portal.auth.models import User
    from portal.crypto.models import DataKey
    from portal.documents.models import Armoire, File, FileVersion, Folder

    def rows(model: Any, *order: Any, exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        # Core rows, not ORM objects: a backup reads every row once and never changes one.
        table = model.__table__
        columns = [c for c in table.columns if c.key not in exclude]
        query = select(*columns).where(table.c.organization_id == organization_id).order_by(*order)
        return [{k: _value(v) for k, v in row.items()} for row in db.session.execute(query).mappings()]

    table = DataKey.__table__
    keys = {
        row.id: row
        for row in db.session.execute(
            select(
                table.c.id, table.c.uid, table.c.wrapped_key, table.c.master_key_id, table.c.context, table.c.created_at
            ).where(table.c.organization_id == organization_id)
        )
    }
    versions = rows(FileVersion, FileVersion.id)
    for version in versions:
        key = keys.get(version["data_key_id"])
        version["data_key_uid"] = key.uid if key is not None else None
    chain = chain_id_for(organization_id)
    return {
        "armoires": rows(Armoire, Armoire.id),
        "folders": rows(Folder, Folder.id),
        "files": rows(File, File.id),
        "versions": versions,
        "members": rows(User, User.id, exclude=_USER_SECRETS),
        "journal": rows(AuditEntry, AuditEntry.seq),
        "checkpoints": [
            {"seq": c.seq, "head_hash": c.head_hash, "at": c.at, "key_id": c.key_id, "signature": c.signature}
            for c in read_checkpoints(chain)
        ],
        "_keys": {
            key.uid: {
                "uid": key.uid,
                "wrapped_key": _value(key.wrapped_key),
                "master_key_id": key.master_key_id,
                "context": key.context,
                "created_at": _value(key.created_at),
            }
            for key in keys.values()
            if key.wrapped_key is not None
        },
    }


STALE_AFTER = timedelta(hours=6)
DISK_FULL = "disk full"


def _failure(error: Exception) -> str:
    """The message a failed backup's row keeps (operators read it; the pages translate it)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{DISK_FULL}: no space left in the backup directory; partial objects were removed"
    return str(error)[:500]


def failure_status(backup: Backup) -> int:
    """The HTTP status of a backup that failed while the caller waited: 507 for a full disk."""
    return 507 if (backup.error or "").startswith(DISK_FULL) else 503


def fail_interrupted(organization_id: int, keep_id: int) -> int:
    """Mark as failed the rows a killed backup left ``en_cours``: none has a manifest."""
    stale = db.session.execute(
        select(Backup).where(
            Backup.organization_id == organization_id,
            Backup.id != keep_id,
            Backup.status == "en_cours",
            Backup.created_at < utcnow() - STALE_AFTER,
        )
    ).scalars()
    count = 0
    for row in stale:
        row.status = "echouee"
        row.error = "interrupted"
        row.finished_at = utcnow()
        count += 1
    return count


def run_backup(backup_id: int) -> Backup:
    """Do the work of a started backup (see the module docstring); commits its own steps."""
    with write_transaction():
        backup = db.session.get(Backup, backup_id)
        if backup is not None and fail_interrupted(backup.organization_id, backup_id):
            db.session.commit()
        get_repository().sweep_temp()
    backup = db.session.get(Backup, backup_id)
    if backup is None or backup.status != "en_cours":
        raise BackupError(f"backup {backup_id} is not waiting to run")
    organization_id = backup.organization_id
    header = {"created_at": _value(backup.created_at), "trigger": backup.trigger}
    actor = Actor(organization_id, backup.created_by_id, user_agent="system" if backup.created_by_id is None else None)
    repository = get_repository()
    pending = None
    try:
        with repository.running():
            known = _previous_objects(repository, organization_id, backup_id)
            snapshot = _snapshot(organization_id)
            db.session.rollback()  # step 1 done: no transaction is open while blobs are copied
            wrapped_keys = snapshot.pop("_keys")
            pending = repository.batch()
            # The keys first: small files whose creation would otherwise queue in the
            # filesystem's journal behind the blobs' data (measured: a third of a first backup).
            key_bytes = 0
            for uid in sorted(
                {v["data_key_uid"] for v in snapshot["versions"] if v.get("storage_key") and not v.get("blob_missing")}
                & set(wrapped_keys)
            ):
                key_bytes += repository.put_key(organization_id, uid, wrapped_keys[uid], sync=False)
            new_bytes, total, objects = _copy_blobs(repository, snapshot["versions"], known, pending)
            new_bytes += key_bytes
            path, manifest_bytes = manifests.write(
                repository, organization_id, backup_id, header, snapshot, pending=pending
            )
        new_bytes += manifest_bytes
        summary = {
            "files": len(snapshot["files"]),
            "versions": len(snapshot["versions"]),
            "bytes": total,
            "new_bytes": new_bytes,
            "objects": len(objects),
        }
    except Exception as error:
        logger.exception("backup %s failed", backup_id)
        if pending is not None:
            pending.abandon()  # a partial pack goes; sealed ones are whole, reusable objects
        db.session.rollback()
        with write_transaction():
            backup = db.session.get(Backup, backup_id)
            assert backup is not None
            backup.status = "echouee"
            backup.error = _failure(error)
            backup.finished_at = utcnow()
            record(
                "backup.failed",
                actor,
                target_type="backup",
                target_id=backup_id,
                target_label=f"#{backup_id}",
                details={"error": backup.error[:200]},
            )
            db.session.commit()
        return backup
    with write_transaction():
        backup = db.session.get(Backup, backup_id)
        assert backup is not None
        backup.status = "reussie"
        backup.path = path
        backup.summary = summary
        backup.finished_at = utcnow()
        record(
            "backup.created",
            actor,
            target_type="backup",
            target_id=backup_id,
            target_label=f"#{backup_id}",
            details={"trigger": backup.trigger, **summary},
        )
        db.session.commit()
    return backup


COPY_WORKERS = 2  # 4 and 8 measured no faster (format 2) on this 2-core machine


def _copy_blobs(
    repository: Repository,
    versions: list[dict[str, Any]],
    known: tuple[dict[str, str], dict[str, int]],
    pending: Any,
) -> tuple[int, int, set[str]]:
    """Copy each version's blob in (setting its ``object`` and ``object_size``); returns
    (bytes written, bytes referenced, objects). Blobs the previous backup holds are only
    looked up; new ones are hashed and appended to packs on two threads (hashing and the
    kernel's copy both run outside the GIL). Nothing is fsynced here: ``manifests.write``
    seals ``pending``'s packs and makes them durable in one pass before the top."""
    from concurrent.futures import ThreadPoolExecutor

    from portal.storage.blobs import get_blob_store

    fresh: list[dict[str, Any]] = []
    # Resolved here: the copy threads have no application context.
    stores = {backend: get_blob_store(backend) for backend in {v.get("storage_backend") for v in versions}}
    for version in versions:
        storage_key = version.get("storage_key")
        if not storage_key or version.get("blob_missing"):
            version["object"] = None
            continue
        digest, size = known[0].get(storage_key), known[1].get(storage_key)
        if digest is not None and size is not None and repository.has_object(digest):
            version["object"], version["object_size"] = digest, size
            version["_written"] = 0
        else:
            fresh.append(version)

    def copy(version: dict[str, Any]) -> None:
        with stores[version.get("storage_backend")].open(version["storage_key"]) as raw:
            version["object"], version["object_size"], version["_written"] = repository.put_object(
                raw, sync=False, pending=pending
            )

    if fresh:
        with ThreadPoolExecutor(max_workers=COPY_WORKERS, thread_name_prefix="coffre-backup-copy") as pool:
            list(pool.map(copy, fresh))  # re-raises the first failure
    written = total = 0
    objects: set[str] = set()
    for version in versions:
        if version.get("object"):
            written += version.pop("_written")
            total += version["object_size"]
            objects.add(version["object"])
    return written, total, objects


def backup_now(actor: Actor, trigger: str) -> Backup:
    """Start and run a backup in this thread (the scheduled job, pre-restore, the CLI)."""
    with write_transaction():
        backup = start_backup(actor, trigger)
        db.session.commit()
    return run_backup(backup.id)


def backup_row(backup: Backup) -> dict[str, Any]:
    summary = backup.summary or {}
    return {
        "id": backup.id,
        "created_at": backup.created_at.isoformat(),
        "trigger": backup.trigger,
        "status": backup.status,
        "summary": {k: summary.get(k, 0) for k in ("files", "versions", "bytes", "new_bytes", "objects")},
        "verified_at": backup.verified_at.isoformat() if backup.verified_at else None,
    }
