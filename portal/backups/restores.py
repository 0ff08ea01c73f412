"""Restores from a backup: every restored file becomes a new current version (or a new file,
or comes back from the trash), nothing is overwritten, each item and the whole restore are
journalled. A restore runs as a background job; an interrupted one run again ends in the
same state (the files already restored are ``unchanged``).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.api.problems import SUBSCRIPTION_READ_ONLY
from portal.audit.context import Actor
from portal.audit.services import record
from portal.backups.manifests import Manifest
from portal.backups.models import Backup, Restore
from portal.backups.repository import ManifestError, Repository, get_repository
from portal.backups.services import BackupError, backup_now
from portal.backups.verification import check_objects
from portal.database import utcnow, write_transaction
from portal.documents.errors import SubscriptionReadOnly
from portal.documents.services import quota
from portal.extensions import db

logger = logging.getLogger(__name__)


def load_manifest(backup: Backup) -> Manifest:
    if not backup.path:
        raise BackupError(_("Cette sauvegarde n'est pas terminée : elle ne peut pas être restaurée."))
    try:
        return Manifest.load(get_repository(), backup.path)
    except ManifestError as error:
        raise BackupError(_("Le manifeste de la sauvegarde est invalide : %(detail)s", detail=str(error))) from error


def _select(manifest: Manifest, scope: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    try:
        return manifest.select(scope)
    except ManifestError as error:
        raise BackupError(_("Le manifeste de la sauvegarde est invalide : %(detail)s", detail=str(error))) from error


def start_restore(actor: Actor, backup: Backup, scope: dict[str, Any]) -> Restore:
    """Check the backup can be used, add the job row; flushes. The caller commits and submits."""
    if backup.verification_ok is False:
        raise BackupError(_("La dernière vérification de cette sauvegarde a échoué : elle ne peut pas être restaurée."))
    if backup.status not in ("reussie", "verifiee"):
        raise BackupError(_("Cette sauvegarde n'est pas terminée : elle ne peut pas être restaurée."))
    try:
        # A restore writes new versions: a read-only subscription refuses it here, once, rather
        # than letting the job run and count every file as failed on the same refusal.
        quota.upload_limits(backup.organization_id, None)
    except SubscriptionReadOnly as error:
        raise BackupError(error.message, status=403, problem_type=SUBSCRIPTION_READ_ONLY) from None
    manifest = load_manifest(backup)
    selected = _select(manifest, scope)
    if not (selected or manifest.scope_exists(scope)):
        raise BackupError(_("Cet élément n'existe pas dans cette sauvegarde."), status=404)
    job = Restore(
        organization_id=backup.organization_id,
        backup_id=backup.id,
        created_by_id=actor.user_id,
        scope=scope,
        status="en_cours",
        counts={"restored": 0, "unchanged": 0, "skipped_purged": 0, "failed": 0},
        skipped=[],
        total=len(selected),
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
    actor: Actor,
    repository: Repository,
    organization_id: int,
    entry: dict[str, Any],
    version: dict[str, Any] | None,
    backup_id: int,
) -> tuple[str, dict[str, Any] | None]:
    """Restore one backed-up file as a new current version; returns (outcome, skipped item)."""
    from portal.crypto.models import ShredRecord
    from portal.documents.models import Armoire, File, Folder
    from portal.documents.services.uploads import finish_upload, prepare_upload, prepare_version, seal_upload

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
            selected = _select(load_manifest(backup), job.scope)
            problems = check_objects(repository, {v["object"] for _f, v in selected if v and v.get("object")})
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
        for index, (entry, version) in enumerate(selected, start=1):
            try:
                outcome, item = _restore_one(actor, repository, backup.organization_id, entry, version, backup.id)
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


def plan_restore(manifest: Manifest, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """What a restore of ``scope`` would do to each file, for the confirmation step (reads only)."""
    from portal.crypto.models import ShredRecord
    from portal.documents.models import File

    shredded = set(db.session.execute(select(ShredRecord.data_key_uid)).scalars())
    plan = []
    for entry, version in _select(manifest, scope):
        live = db.session.get(File, entry["id"])
        if live is not None and live.organization_id != manifest.organization_id:
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


def tree_level(manifest: Manifest, *, armoire_id: int | None = None, folder_id: int | None = None) -> dict[str, Any]:
    """One level of a backup's tree for its page: the armoires (from the top manifest alone),
    or one armoire's root, or one folder: its sub-folders and its files (reading only the
    files parts that hold them). Raises LookupError for an armoire or folder it lacks."""
    if folder_id is not None:
        folder = next((f for f in manifest.folders if f["id"] == folder_id), None)
        if folder is None:
            raise LookupError(folder_id)
        armoire_id = folder["armoire_id"]
    elif armoire_id is None:
        return {"armoires": manifest.armoires, "folders": [], "files": []}
    elif not any(a["id"] == armoire_id for a in manifest.armoires):
        raise LookupError(armoire_id)
    folders = [f for f in manifest.folders if f["armoire_id"] == armoire_id and f["parent_id"] == folder_id]
    files = [f for f in manifest.folder_files(armoire_id, folder_id) if not f.get("purged_at")]
    return {"armoires": [], "folders": folders, "files": files}
