"""Retention of backups: the newest backup of each of the last N days, weeks and months.

Backups younger than a day are never pruned. Pruning deletes the rows and manifests first,
then the objects and wrapped keys that no remaining manifest references (of any
organisation: objects are shared by hash), so a kept backup never loses an object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.backups.manifests import Manifest
from portal.backups.models import Backup, BackupSettings
from portal.backups.repository import ManifestError, get_repository
from portal.database import utcnow
from portal.extensions import db

MIN_AGE = timedelta(days=1)
LIMITS = {"keep_daily": (0, 366), "keep_weekly": (0, 520), "keep_monthly": (0, 600)}


@dataclass(frozen=True)
class Policy:
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12
    schedule: str = "quotidien"


def policy_for(organization_id: int) -> Policy:
    row = db.session.execute(
        select(BackupSettings).where(BackupSettings.organization_id == organization_id)
    ).scalar_one_or_none()
    if row is None:
        return Policy()
    return Policy(row.keep_daily, row.keep_weekly, row.keep_monthly, row.schedule)


def save_policy(actor: Actor, policy: Policy) -> BackupSettings:
    """Store an organisation's settings (values already validated by the form); flushes."""
    assert actor.organization_id is not None
    row = db.session.execute(
        select(BackupSettings).where(BackupSettings.organization_id == actor.organization_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        row = BackupSettings(organization_id=actor.organization_id)
        db.session.add(row)
    row.keep_daily, row.keep_weekly, row.keep_monthly = policy.keep_daily, policy.keep_weekly, policy.keep_monthly
    row.schedule = policy.schedule
    row.updated_at = utcnow()
    record(
        "organization.settings_changed",
        actor,
        target_type="organization",
        target_id=actor.organization_id,
        details={"backups": {**policy.__dict__}},
    )
    db.session.flush()
    return row


def to_keep(backups: Iterable[Backup], policy: Policy, now: datetime) -> set[int]:
    """Ids kept by ``policy`` among finished backups (any order)."""
    usable = sorted(
        (b for b in backups if b.status in ("reussie", "verifiee") and b.path), key=lambda b: b.created_at, reverse=True
    )
    keep = {b.id for b in usable if now - b.created_at < MIN_AGE}
    for count, bucket in (
        (policy.keep_daily, lambda d: d.date().isoformat()),
        (policy.keep_weekly, lambda d: "{}-{:02d}".format(*d.isocalendar()[:2])),
        (policy.keep_monthly, lambda d: f"{d.year}-{d.month:02d}"),
    ):
        seen: list[str] = []
        for backup in usable:
            key = bucket(backup.created_at)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(backup.id)
    return keep


def prune(organization_id: int, now: datetime | None = None) -> list[int]:
    """Delete the backups ``policy_for`` does not keep (never one younger than a day); flushes.
    Returns the deleted ids; ``collect_garbage`` then removes what they alone referenced.

    A backup holding a file under retention or a legal hold is kept (the compliance policy
    refuses; the refusal is journalled)."""
    from portal.compliance.errors import DeletionRefused
    from portal.compliance.policy import assert_backup_prunable, record_refusal

    now = now or utcnow()
    policy = policy_for(organization_id)
    backups = list(db.session.execute(select(Backup).where(Backup.organization_id == organization_id)).scalars())
    keep = to_keep(backups, policy, now)
    repository = get_repository()
    deleted = []
    for backup in backups:
        if backup.id in keep or now - backup.created_at < MIN_AGE or backup.status == "en_cours":
            continue
        if backup.path:
            try:
                assert_backup_prunable(organization_id, Manifest.load(repository, backup.path).files())
            except DeletionRefused as refusal:
                refusal.action = "backup_prune"
                record_refusal(Actor.system(organization_id), refusal, extra={"backup_id": backup.id})
                keep.add(backup.id)
                continue
            except ManifestError:
                pass  # unreadable: it protects nothing, it is pruned as before
            repository.delete_manifest(backup.path)
        deleted.append(backup.id)
        db.session.delete(backup)
    if deleted:
        record(
            "backup.pruned",
            Actor.system(organization_id),
            target_type="backup",
            details={"deleted": deleted, "kept": sorted(keep), "policy": {**policy.__dict__}},
        )
    db.session.flush()
    return deleted


def collect_garbage() -> dict[str, int]:
    """Remove objects and wrapped keys that no manifest on disk references any more.

    Runs under the repository's exclusive lock (skipped while a backup runs: ``skipped``),
    so no backup can start reusing an object between the reading of the manifests and the
    deletions. Reads the manifests from disk, not the rows. Objects stored one a file
    (formats 1 and 2) younger than a day are never collected (their mtime is refreshed
    on reuse); packs (format 3) younger than a day neither. A pack wholly unreferenced is
    deleted, one more than half unreferenced repacked (``packs``)."""
    repository = get_repository()
    with repository.exclusive() as held:
        if not held:
            return {"objects": 0, "keys": 0, "skipped": 1}
        objects: set[str] = set()
        keys: set[tuple[str, str]] = set()
        for path in repository.iter_manifests():
            try:
                manifest = Manifest.load(repository, path)
                objects |= manifest.objects()  # blobs and the manifest's own parts
                keys |= {(str(manifest.organization_id), uid) for _key, _obj, _size, uid in manifest.index() if uid}
            except ManifestError:
                # An unreadable manifest protects nothing but must not make us delete blindly.
                return {"objects": 0, "keys": 0}
        cutoff = utcnow().timestamp() - MIN_AGE.total_seconds()
        removed = {"objects": 0, "keys": 0}
        for name, mtime in list(repository.iter_objects()):
            if name not in objects and mtime < cutoff:
                repository.delete_object(name)
                removed["objects"] += 1
        for organization, uid, mtime in list(repository.iter_keys()):
            if (organization, uid) not in keys and mtime < cutoff:
                repository.delete_key(int(organization), uid)
                removed["keys"] += 1
        packed = repository.collect_packs(objects, cutoff)
        removed["objects"] += packed.pop("packed_objects", 0)
        removed.update(packed)
        return removed
