"""Backups: taking them (incremental), verifying them, restoring from them as new versions.

A backup runs in three steps so no transaction is open while blobs are copied:
  1. read the organisation's rows into plain values (one read transaction, then ended);
  2. copy each blob's ciphertext into the repository, named by its sha256 (a blob whose
     storage key the previous manifest already names is not read again: blobs are
     immutable), and each still-wrapped data key;
  3. write the signed manifest, then mark the row ``reussie`` and journal ``backup.created``.
A backup killed before 3 leaves its row ``en_cours`` with no manifest: nothing claims success.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import chain_id_for, record
from portal.backups.models import Backup, Restore
from portal.backups.repository import ManifestError, Repository, get_repository
from portal.database import utcnow, write_transaction
from portal.extensions import db

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1


class BackupError(Exception):
    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _row(obj: Any, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {c.key: _value(getattr(obj, c.key)) for c in obj.__table__.columns if c.key not in exclude}


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


def _previous_objects(repository: Repository, organization_id: int, backup_id: int) -> dict[str, str]:
    """storage key -> object hash from the newest successful manifest, to skip re-reading blobs."""
    previous = db.session.execute(
        select(Backup)
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
        return {}
    try:
        body = repository.read_manifest(previous.path or "")
    except ManifestError:
        return {}
    return {v["storage_key"]: v["object"] for v in body.get("versions", []) if v.get("storage_key") and v.get("object")}


def _snapshot(organization_id: int) -> dict[str, Any]:
    from portal.audit.checkpoints import read_checkpoints
    from portal.audit.models import AuditEntry
    from portal.auth.models import User
    from portal.crypto.models import DataKey
    from portal.documents.models import Armoire, File, FileVersion, Folder

    def rows(model: Any, *order: Any, exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        query = select(model).where(model.organization_id == organization_id).order_by(*order)
        return [_row(obj, exclude) for obj in db.session.execute(query).scalars()]

    keys = {
        key.id: key
        for key in db.session.execute(select(DataKey).where(DataKey.organization_id == organization_id)).scalars()
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
    from portal.storage.blobs import get_blob_store

    with write_transaction():
        backup = db.session.get(Backup, backup_id)
        if backup is not None and fail_interrupted(backup.organization_id, backup_id):
            db.session.commit()
        get_repository().sweep_temp()
    backup = db.session.get(Backup, backup_id)
    if backup is None or backup.status != "en_cours":
        raise BackupError(f"backup {backup_id} is not waiting to run")
    organization_id = backup.organization_id
    actor = Actor(organization_id, backup.created_by_id, user_agent="system" if backup.created_by_id is None else None)
    try:
        repository = get_repository()
        known = _previous_objects(repository, organization_id, backup_id)
        snapshot = _snapshot(organization_id)
        db.session.rollback()  # step 1 done: no transaction is open while blobs are copied
        wrapped_keys = snapshot.pop("_keys")
        new_bytes = 0
        total = 0
        objects: set[str] = set()
        for version in snapshot["versions"]:
            storage_key = version.get("storage_key")
            if not storage_key or version.get("blob_missing"):
                version["object"] = None
                continue
            store = get_blob_store(version.get("storage_backend"))
            digest = known.get(storage_key)
            if digest is not None and repository.has_object(digest):
                size = store.size(storage_key)
            else:
                with store.open(storage_key) as raw:
                    digest, size, written = repository.put_object(raw, sync=False)
                new_bytes += written
            version["object"] = digest
            version["object_size"] = size
            objects.add(digest)
            total += size
            uid = version.get("data_key_uid")
            if uid in wrapped_keys:
                new_bytes += repository.put_key(organization_id, uid, wrapped_keys[uid], sync=False)
        body = {
            "format": MANIFEST_FORMAT,
            "backup_id": backup_id,
            "organization_id": organization_id,
            "created_at": _value(backup.created_at),
            "trigger": backup.trigger,
            **snapshot,
        }
        # Every object durable before the manifest that names them exists.
        repository.make_durable()
        path, manifest_bytes = repository.write_manifest(organization_id, backup_id, body)
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
        db.session.rollback()
        with write_transaction():
            backup = db.session.get(Backup, backup_id)
            assert backup is not None
            backup.status = "echouee"
            backup.error = str(error)[:500]
            backup.finished_at = utcnow()
            record(
                "backup.failed",
                actor,
                target_type="backup",
                target_id=backup_id,
                target_label=f"#{backup_id}",
                details={"error": str(error)[:200]},
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


def backup_now(actor: Actor, trigger: str) -> Backup:
    """Start and run a backup in this thread (the scheduled job, pre-restore, the CLI)."""
    with write_transaction():
        backup = start_backup(actor, trigger)
        db.session.commit()
    return run_backup(backup.id)


# ---------------------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    backup_id: int
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_objects(repository: Repository, body: dict[str, Any], versions: list[dict[str, Any]]) -> list[str]:
    """Problems with the objects ``versions`` reference: missing or not matching their hash."""
    problems = []
    for digest in sorted({v["object"] for v in versions if v.get("object")}):
        actual = repository.hash_object(digest)
        if actual is None:
            problems.append(f"object {digest} is missing")
        elif actual != digest:
            problems.append(f"object {digest} is corrupted (its content hashes to {actual})")
    return problems


def verify_backup(backup: Backup) -> VerifyResult:
    """Re-read every object, check its hash and the manifest's signature; records the outcome (flushes)."""
    result = VerifyResult(backup.id)
    repository = get_repository()
    if not backup.path:
        result.problems.append(f"backup {backup.id} has no manifest")
    else:
        try:
            body = repository.read_manifest(backup.path)
        except ManifestError as error:
            result.problems.append(str(error))
        else:
            result.checked = len({v["object"] for v in body.get("versions", []) if v.get("object")})
            result.problems.extend(check_objects(repository, body, body.get("versions", [])))
    backup.verified_at = utcnow()
    backup.verification_ok = result.ok
    backup.verification_detail = None if result.ok else result.problems[0][:500]
    if backup.status in ("reussie", "verifiee", "echouee") and backup.path:
        backup.status = "verifiee" if result.ok else "echouee"
    record(
        "backup.verified",
        Actor.system(backup.organization_id),
        target_type="backup",
        target_id=backup.id,
        target_label=f"#{backup.id}",
        details={"ok": result.ok, "objects": result.checked, "first_problem": backup.verification_detail},
    )
    db.session.flush()
    return result


# ---------------------------------------------------------------------------- restore


def load_manifest(backup: Backup) -> dict[str, Any]:
    if not backup.path:
        raise BackupError(_("Cette sauvegarde n'est pas terminée : elle ne peut pas être restaurée."))
    try:
        return get_repository().read_manifest(backup.path)
    except ManifestError as error:
        raise BackupError(_("Le manifeste de la sauvegarde est invalide : %(detail)s", detail=str(error))) from error


def select_files(body: dict[str, Any], scope: dict[str, Any]) -> list[dict[str, Any]]:
    """The backed-up files a scope names (purged tombstones excluded from 'all')."""
    files = [f for f in body.get("files", [])]
    if scope.get("all"):
        return files
    if "file_id" in scope:
        return [f for f in files if f["id"] == scope["file_id"]]
    if "armoire_id" in scope:
        return [f for f in files if f["armoire_id"] == scope["armoire_id"]]
    if "folder_id" in scope:
        children: dict[int | None, list[int]] = {}
        for folder in body.get("folders", []):
            children.setdefault(folder["parent_id"], []).append(folder["id"])
        wanted, stack = set(), [scope["folder_id"]]
        while stack:
            current = stack.pop()
            wanted.add(current)
            stack.extend(children.get(current, []))
        return [f for f in files if f["folder_id"] in wanted]
    return []


def scope_exists(body: dict[str, Any], scope: dict[str, Any]) -> bool:
    if scope.get("all"):
        return True
    for key, collection in (("file_id", "files"), ("folder_id", "folders"), ("armoire_id", "armoires")):
        if key in scope:
            return any(item["id"] == scope[key] for item in body.get(collection, []))
    return False


def start_restore(actor: Actor, backup: Backup, scope: dict[str, Any]) -> Restore:
    """Check the backup can be used, add the job row; flushes. The caller commits and submits."""
    if backup.verification_ok is False:
        raise BackupError(_("La dernière vérification de cette sauvegarde a échoué : elle ne peut pas être restaurée."))
    if backup.status not in ("reussie", "verifiee"):
        raise BackupError(_("Cette sauvegarde n'est pas terminée : elle ne peut pas être restaurée."))
    body = load_manifest(backup)
    if not scope_exists(body, scope):
        raise BackupError(_("Cet élément n'existe pas dans cette sauvegarde."), status=404)
    job = Restore(
        organization_id=backup.organization_id,
        backup_id=backup.id,
        created_by_id=actor.user_id,
        scope=scope,
        status="en_cours",
        counts={"restored": 0, "unchanged": 0, "skipped_purged": 0, "failed": 0},
        skipped=[],
        total=len(select_files(body, scope)),
    )
    db.session.add(job)
    db.session.flush()
    return job


def _purger(organization_id: int, file_id: int) -> tuple[str | None, str | None]:
    """When a file was purged and by whom, from the journal."""
    from portal.audit.models import AuditEntry
    from portal.auth.models import User

    entry = db.session.execute(
        select(AuditEntry)
        .where(
            AuditEntry.organization_id == organization_id,
            AuditEntry.action == "file.purged",
            AuditEntry.target_type == "file",
            AuditEntry.target_id == file_id,
        )
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if entry is None:
        return None, None
    user = db.session.get(User, entry.user_id) if entry.user_id else None
    return entry.created_at.isoformat(), user.name if user is not None else None


def _backup_chunks(repository: Repository, organization_id: int, version: dict[str, Any], key_record: dict[str, Any]):
    """Decrypt a backed-up version with its backed-up wrapped key (the original AAD)."""
    from portal.crypto.envelope import open_data_key
    from portal.crypto.models import DataKey
    from portal.crypto.streaming import associated_data, decrypt_stream

    context = key_record["context"]
    transient = DataKey(
        wrapped_key=base64.b64decode(key_record["wrapped_key"]),
        master_key_id=key_record["master_key_id"],
        context=context,
    )
    key = open_data_key(transient, context)
    file_id = int(context["file"]) if "file" in context else None
    aad = associated_data(organization_id, version["uid"], file_id)
    raw = repository.open_object(version["object"])

    def chunks():
        try:
            yield from decrypt_stream(raw, key, aad)
        finally:
            raw.close()

    return chunks()


def _restore_one(
    actor: Actor, repository: Repository, body: dict[str, Any], entry: dict[str, Any], backup_id: int
) -> tuple[str, dict[str, Any] | None]:
    """Restore one backed-up file as a new current version; returns (outcome, skipped item)."""
    from portal.crypto.models import ShredRecord
    from portal.documents.models import Armoire, File, Folder
    from portal.documents.services.uploads import finish_upload, prepare_upload, prepare_version, seal_upload

    organization_id = body["organization_id"]
    versions = {v["id"]: v for v in body.get("versions", [])}
    version = versions.get(entry.get("current_version_id"))
    live = db.session.get(File, entry["id"])
    if live is not None and live.organization_id != organization_id:
        live = None
    uid = version.get("data_key_uid") if version else None
    shredded = (
        uid is not None
        and db.session.execute(select(ShredRecord.id).where(ShredRecord.data_key_uid == uid)).first() is not None
    )
    key_record = repository.read_key(organization_id, uid) if uid else None
    if (
        (live is not None and live.purged_at is not None)
        or shredded
        or version is None
        or not version.get("object")
        or key_record is None
    ):
        purged_at, purged_by = _purger(organization_id, entry["id"])
        if purged_at is None and live is not None and live.purged_at is not None:
            purged_at = live.purged_at.isoformat()
        return "skipped_purged", {
            "file_id": entry["id"],
            "name": entry["name"],
            "purged_at": purged_at,
            "purged_by": purged_by,
        }
    if (
        live is not None
        and live.deleted_at is None
        and live.current_version is not None
        and live.current_version.sha256 == version.get("sha256")
    ):
        return "unchanged", None
    details = {"backup": backup_id, "backup_version": version["number"]}
    if live is not None:
        if live.deleted_at is not None:
            # Back from the trash, then the backed-up content on top: history stays whole.
            live.deleted_at = None
            live.deleted_by_id = None
            db.session.flush()
        plan = prepare_version(
            actor,
            live,
            None,
            version["size"],
            _("Restauration depuis la sauvegarde %(id)s", id=backup_id),
            restored_from=version["number"],
        )
    else:
        armoire = db.session.get(Armoire, entry["armoire_id"])
        if armoire is None or armoire.organization_id != organization_id:
            raise BackupError(_("L'armoire de ce fichier n'existe plus."))
        folder = db.session.get(Folder, entry["folder_id"]) if entry.get("folder_id") else None
        if folder is not None and folder.armoire_id != armoire.id:
            folder = None
        plan = prepare_upload(
            actor,
            armoire,
            folder,
            entry["name"],
            version["size"],
            _("Restauration depuis la sauvegarde %(id)s", id=backup_id),
        )
    plan.action = "file.restored_from_backup"
    plan.restored_from = version["number"]
    plan.audit_details = details
    sealed = seal_upload(plan, _backup_chunks(repository, organization_id, version, key_record))
    finish_upload(sealed)
    return "restored", None


def run_restore(restore_id: int) -> Restore:
    """Restore the files of a job's scope; each file commits on its own, so an interrupted
    restore run again finds the done ones ``unchanged`` and ends in the same state."""
    from portal.crypto.envelope import apply_shred_ledger

    with write_transaction():
        job = db.session.get(Restore, restore_id)
        if job is None:
            raise BackupError(f"restore {restore_id} does not exist")
        backup = db.session.get(Backup, job.backup_id)
        assert backup is not None
        actor = Actor(job.organization_id, job.created_by_id, user_agent="restore")
        try:
            # The shred ledger first: a key destroyed since the backup must stay destroyed.
            apply_shred_ledger()
            reconcile_backup_keys()
            db.session.commit()
            repository = get_repository()
            body = load_manifest(backup)
            files = select_files(body, job.scope)
            versions = {v["id"]: v for v in body.get("versions", [])}
            wanted = [versions[f["current_version_id"]] for f in files if f.get("current_version_id") in versions]
            problems = check_objects(repository, body, wanted)
            if problems:
                raise BackupError(
                    _("La sauvegarde est endommagée, rien n'a été modifié : %(detail)s", detail=problems[0])
                )
            db.session.rollback()
            if job.done == 0 and not job.counts.get("pre_backup"):
                pre = backup_now(Actor(job.organization_id, job.created_by_id), "pre_restauration")
                job = db.session.get(Restore, restore_id)
                assert job is not None
                job.counts = {**job.counts, "pre_backup": pre.id}
                db.session.commit()
        except BackupError as error:
            db.session.rollback()
            return _finish_restore(restore_id, actor, failed_message=error.message)
        counts = {"restored": 0, "unchanged": 0, "skipped_purged": 0, "failed": 0}
        skipped: list[dict[str, Any]] = []
        for index, entry in enumerate(files, start=1):
            try:
                outcome, item = _restore_one(actor, repository, body, entry, backup.id)
                db.session.commit()
            except Exception:
                logger.exception("restoring file %s from backup %s failed", entry.get("id"), backup.id)
                db.session.rollback()
                outcome, item = "failed", None
            counts[outcome] += 1
            if item is not None:
                skipped.append(item)
            job = db.session.get(Restore, restore_id)
            assert job is not None
            job.done = index
            job.counts = {**job.counts, **counts}
            job.skipped = skipped
            db.session.commit()
        return _finish_restore(restore_id, actor)


def _finish_restore(restore_id: int, actor: Actor, failed_message: str | None = None) -> Restore:
    with write_transaction():
        job = db.session.get(Restore, restore_id)
        assert job is not None
        job.status = "echouee" if failed_message or job.counts.get("failed") else "reussie"
        job.error = failed_message[:500] if failed_message else None
        job.finished_at = utcnow()
        counts = {k: job.counts.get(k, 0) for k in ("restored", "unchanged", "skipped_purged", "failed")}
        record(
            "backup.restored",
            actor,
            target_type="backup",
            target_id=job.backup_id,
            target_label=f"#{job.backup_id}",
            details={"restore": job.id, "scope": job.scope, "status": job.status, **counts, "error": job.error},
        )
        db.session.commit()
        return job


def reconcile_backup_keys() -> int:
    """Delete from the repository every wrapped key the shred ledger names; returns how many.

    Called after each purge commit and before each restore: a backup taken before a purge
    keeps the ciphertext, but no longer the key that opens it."""
    from portal.crypto.models import ShredRecord

    repository = get_repository()
    removed = 0
    for org_id, uid in db.session.execute(select(ShredRecord.organization_id, ShredRecord.data_key_uid)):
        try:
            removed += repository.delete_key(org_id, uid)
        except ValueError:
            continue
    return removed


def restore_row(job: Restore) -> dict[str, Any]:
    return {
        "id": job.id,
        "backup_id": job.backup_id,
        "status": job.status,
        "counts": {k: job.counts.get(k, 0) for k in ("restored", "unchanged", "skipped_purged", "failed")},
        "skipped": list(job.skipped or []),
    }


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


def plan_restore(body: dict[str, Any], scope: dict[str, Any]) -> list[dict[str, Any]]:
    """What a restore of ``scope`` would do to each file, for the confirmation step (reads only)."""
    from portal.crypto.models import ShredRecord
    from portal.documents.models import File

    versions = {v["id"]: v for v in body.get("versions", [])}
    shredded = set(db.session.execute(select(ShredRecord.data_key_uid)).scalars())
    plan = []
    for entry in select_files(body, scope):
        version = versions.get(entry.get("current_version_id"))
        live = db.session.get(File, entry["id"])
        if live is not None and live.organization_id != body["organization_id"]:
            live = None
        if version is None or (live is not None and live.purged_at) or version.get("data_key_uid") in shredded:
            change = "purged"
        elif live is None:
            change = "new_file"
        elif live.deleted_at is not None:
            change = "from_trash"
        elif live.current_version is not None and live.current_version.sha256 == version.get("sha256"):
            change = "unchanged"
        else:
            change = "new_version"
        plan.append({"file_id": entry["id"], "name": entry["name"], "change": change})
    return plan


def tree(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Armoires > folders > files of a manifest, for the backup's page."""
    folders: dict[int | None, list[dict[str, Any]]] = {}
    for folder in body.get("folders", []):
        folders.setdefault(folder["parent_id"], []).append(folder)
    files: dict[tuple[int, int | None], list[dict[str, Any]]] = {}
    for entry in body.get("files", []):
        if entry.get("purged_at"):
            continue
        files.setdefault((entry["armoire_id"], entry["folder_id"]), []).append(entry)

    def folder_node(folder: dict[str, Any]) -> dict[str, Any]:
        return {
            "folder": folder,
            "children": [folder_node(child) for child in folders.get(folder["id"], [])],
            "files": files.get((folder["armoire_id"], folder["id"]), []),
        }

    return [
        {
            "armoire": armoire,
            "folders": [folder_node(f) for f in folders.get(None, []) if f["armoire_id"] == armoire["id"]],
            "files": files.get((armoire["id"], None), []),
        }
        for armoire in body.get("armoires", [])
    ]
