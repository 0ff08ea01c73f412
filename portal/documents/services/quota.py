"""Size limits and the organisation's storage quota.

Usage counts every stored version of every file not yet purged. It is read from the
per-armoire storage counters (``dashboard.storage``), which every change of a file or a
version updates in its own transaction: a sum over the organisation's armoires, not over
its versions, so an upload's check does not grow with the archive. The quota (a plan's, or
the trial's) is re-checked under the organisation's row lock when an upload's rows are
added, so parallel uploads cannot overshoot it. An unfinished resumable upload reserves its declared length from its
creation (taken under the same lock) until it completes, is terminated or expires: twenty
parallel tus uploads are refused at creation, not after their bytes were sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, select

from portal.database import utcnow
from portal.documents.errors import FileTooLarge, QuotaExceeded, SubscriptionReadOnly
from portal.documents.models import ResumableUpload
from portal.extensions import db
from portal.organizations.models import Organization

if TYPE_CHECKING:
    from portal.documents.services.uploads import UploadPlan


def _stored_total(organization_id: int):
    from portal.dashboard.models import ArmoireStorage  # the dashboard package imports its views

    return select(func.coalesce(func.sum(ArmoireStorage.bytes), 0)).where(
        ArmoireStorage.organization_id == organization_id
    )


def _reserved_total(organization_id: int, except_version_uid: str | None):
    query = select(func.coalesce(func.sum(ResumableUpload.length), 0)).where(
        ResumableUpload.organization_id == organization_id,
        ResumableUpload.completed_at.is_(None),
        ResumableUpload.expires_at > utcnow(),
    )
    if except_version_uid is not None:
        query = query.where(ResumableUpload.version_uid != except_version_uid)
    return query


def _committed_total(organization_id: int, except_version_uid: str | None):
    """Stored bytes plus the reservations of resumable uploads, as one SQL expression, for a
    statement that reads it beside other columns."""
    stored = _stored_total(organization_id).scalar_subquery()
    return stored + _reserved_total(organization_id, except_version_uid).scalar_subquery()


def used_bytes(organization_id: int) -> int:
    """Bytes counted against the quota: every stored version of every non-purged file."""
    return int(db.session.execute(_stored_total(organization_id)).scalar_one())


def reserved_bytes(organization_id: int, except_version_uid: str | None = None) -> int:
    """Declared lengths of the organisation's unfinished, unexpired resumable uploads.

    ``except_version_uid``: the upload being completed, whose bytes its own check adds."""
    return int(db.session.execute(_reserved_total(organization_id, except_version_uid)).scalar_one())


def committed_bytes(organization_id: int, except_version_uid: str | None = None) -> int:
    """What a new upload must fit beside: stored bytes plus the reservations of resumable
    uploads, in one statement (a small upload's statement budget is counted)."""
    return int(db.session.execute(select(_committed_total(organization_id, except_version_uid))).scalar_one())


def quota_bytes(organization_id: int) -> int | None:
    quota = db.session.execute(
        select(Organization.storage_quota_bytes).where(Organization.id == organization_id)
    ).scalar_one_or_none()
    return _effective_quota(quota)


def _effective_quota(quota: int | None) -> int | None:
    if quota is None:
        # Billing sets the column when a plan is paid; until then the trial's quota applies (0: none).
        trial_mb = int(current_app.config.get("COFFRE_TRIAL_STORAGE_MB", 0))
        return trial_mb * 1024 * 1024 or None
    return quota


@dataclass
class Limits:
    max_bytes: int
    quota_left: int | None


def upload_limits(organization_id: int, declared_size: int | None) -> Limits:
    # Every upload (web, API, desktop, version, restore) starts here, before any byte is read:
    # a read-only subscription (billing's lifecycle) refuses it, read with the quota in one statement.
    from portal.billing.lifecycle import read_only_message
    from portal.billing.models import STATUS_READ_ONLY, Subscription

    # Usage is read in the same statement even when there is no quota: one statement, not two.
    row = db.session.execute(
        select(
            Organization.storage_quota_bytes,
            Subscription.status,
            _committed_total(organization_id, None).label("committed"),
        )
        .outerjoin(Subscription, Subscription.organization_id == Organization.id)
        .where(Organization.id == organization_id)
    ).first()
    if row is not None and row.status == STATUS_READ_ONLY:
        raise SubscriptionReadOnly(read_only_message())
    max_bytes = int(current_app.config["MAX_UPLOAD_BYTES"])
    quota = _effective_quota(row.storage_quota_bytes if row is not None else None)
    quota_left = None if quota is None or row is None else quota - int(row.committed)
    limits = Limits(max_bytes, quota_left)
    if declared_size is not None:
        check_size(limits, declared_size)
    return limits


def check_size(limits: Limits | UploadPlan, size: int) -> None:
    if size > limits.max_bytes:
        mib = limits.max_bytes // (1024 * 1024)
        raise FileTooLarge(_("Le fichier dépasse la taille maximale autorisée (%(mib)s Mio).", mib=mib))
    if limits.quota_left is not None and size > limits.quota_left:
        raise QuotaExceeded(
            _("Le quota de stockage de votre organisation est atteint : ce fichier ne peut pas être ajouté.")
        )


def lock_organization(organization_id: int) -> int | None:
    """Serialise quota checks of one organisation (PostgreSQL: row lock; SQLite: the write
    transaction is IMMEDIATE already, FOR UPDATE is not rendered) and return its quota, read
    under the lock (one statement instead of two): the plan's, or the trial's while no plan
    is paid (None: no quota).

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: every insert of a row that references the
    organisation (a journal entry, a rollup) takes ``FOR KEY SHARE`` on it, which ``FOR UPDATE``
    blocks. A download holding the journal chain head then waited for this upload, which
    waited for the head: a deadlock, answered 500 (issue 18, PostgreSQL load run). Quota
    checks still exclude one another: the lock conflicts with itself."""
    quota = db.session.execute(
        select(Organization.storage_quota_bytes)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=True)
    ).scalar_one_or_none()
    return _effective_quota(quota)


def lock_and_measure(organization_id: int, except_version_uid: str | None) -> tuple[int | None, int]:
    """``lock_organization``, then ``committed_bytes`` read under the lock: the quota, and what
    a new upload must fit beside.

    On SQLite the transaction already holds the write lock (IMMEDIATE), so one statement reads
    both. On PostgreSQL they must be two: a ``SELECT … FOR NO KEY UPDATE`` that waited for the
    lock re-reads the locked row but evaluates its subqueries in the snapshot taken before the
    wait, so a sum in the same statement would miss the upload that held the lock."""
    if db.session.get_bind().dialect.name != "sqlite":
        quota = lock_organization(organization_id)
        return quota, committed_bytes(organization_id, except_version_uid)
    row = db.session.execute(
        select(Organization.storage_quota_bytes, _committed_total(organization_id, except_version_uid)).where(
            Organization.id == organization_id
        )
    ).one()
    return _effective_quota(row[0]), int(row[1])
