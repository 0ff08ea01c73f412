"""Verifying backups: ``backups verify`` re-reads everything; the nightly job reads a slice.

Both check the top manifest's signature, re-read and hash every part (they are small and
name everything else) and check that every object exists. ``backups verify`` then re-hashes
every object. The nightly job re-hashes only the objects of tonight's slice: an object
belongs to slice ``int(hash[:8], 16) % COFFRE_BACKUP_VERIFY_SLICES`` and night ``d`` reads
slice ``d % slices`` (restic's ``check --read-data-subset=n/t``), so every object is
re-read once every ``slices`` nights (7 by default: weekly) while a night reads 1/7 of the
bytes. An object shared by several backups is read once per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.backups.manifests import Manifest
from portal.backups.models import Backup
from portal.backups.repository import ManifestError, Repository, get_repository
from portal.database import utcnow, write_transaction
from portal.extensions import db


@dataclass
class VerifyResult:
    backup_id: int
    checked: int = 0
    read: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def in_slice(digest: str, night: int, slices: int) -> bool:
    return int(digest[:8], 16) % slices == night % slices


class ObjectChecker:
    """Checks objects, remembering what it found: objects are shared between backups."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._hashes: dict[str, str | None] = {}
        self._present: dict[str, bool] = {}

    def problem(self, digest: str, *, read: bool = True) -> str | None:
        """What is wrong with ``digest``: re-hashed when ``read``, else only looked up."""
        if read:
            if digest not in self._hashes:
                self._hashes[digest] = self.repository.hash_object(digest)
            actual = self._hashes[digest]
            if actual is None:
                return f"object {digest} is missing"
            if actual != digest:
                return f"object {digest} is corrupted (its content hashes to {actual})"
            return None
        if digest in self._hashes:
            return self.problem(digest, read=True)
        if digest not in self._present:
            self._present[digest] = self.repository.object_exists(digest)
        return None if self._present[digest] else f"object {digest} is missing"


def check_objects(repository: Repository, digests: set[str]) -> list[str]:
    """Problems with ``digests``, each re-read and hashed (a restore checks what it reads)."""
    checker = ObjectChecker(repository)
    return [p for d in sorted(digests) if (p := checker.problem(d)) is not None]


def verify_backup(
    backup: Backup, *, night: int | None = None, slices: int = 1, checker: ObjectChecker | None = None
) -> VerifyResult:
    """Check a backup (every object, or with ``night`` only that night's slice re-hashed);
    records the outcome on the row and in the journal (flushes)."""
    result = VerifyResult(backup.id)
    repository = get_repository()
    checker = checker or ObjectChecker(repository)
    if not backup.path:
        result.problems.append(f"backup {backup.id} has no manifest")
    else:
        try:
            manifest = Manifest.load(repository, backup.path)
            for ref in manifest.part_refs():
                manifest.part(ref)  # read and hash-checked
            parts = {ref["object"] for ref in manifest.part_refs()}
            objects = manifest.objects() - parts
        except ManifestError as error:
            result.problems.append(str(error))
        else:
            result.checked = len(objects) + len(parts)
            result.read = len(parts)
            for digest in sorted(objects):
                read = night is None or in_slice(digest, night, slices)
                result.read += read
                problem = checker.problem(digest, read=read)
                if problem is not None:
                    result.problems.append(problem)
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
        details={
            "ok": result.ok,
            "objects": result.checked,
            "read": result.read,
            "sampled": night is not None,
            "first_problem": backup.verification_detail,
        },
    )
    db.session.flush()
    return result


def verify_nightly(night: int | None = None) -> list[VerifyResult]:
    """The nightly verification of every finished backup, re-hashing one slice of objects."""
    night = utcnow().toordinal() if night is None else night
    slices = max(1, int(current_app.config.get("COFFRE_BACKUP_VERIFY_SLICES", 7)))
    ids = list(
        db.session.execute(
            select(Backup.id)
            .where(Backup.path.is_not(None), Backup.status.in_(("reussie", "verifiee")))
            .order_by(Backup.id)
        ).scalars()
    )
    db.session.rollback()
    checker = ObjectChecker(get_repository())
    results = []
    for backup_id in ids:
        with write_transaction():
            backup = db.session.get(Backup, backup_id)
            if backup is None:  # pruned meanwhile
                continue
            results.append(verify_backup(backup, night=night, slices=slices, checker=checker))
            db.session.commit()
    return results
