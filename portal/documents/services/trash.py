"""The trash and purge.

A purge records the data keys in the shred ledger file (fsynced) before anything else,
shreds them in the transaction and deletes the blobs only after the commit: a crash in
between leaves undecryptable orphans that ``flask documents check-storage --fix`` removes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.database import utcnow
from portal.documents.errors import NotFound, ShredNotRecorded
from portal.documents.models import File
from portal.documents.services.versions import list_versions, require_live
from portal.extensions import db
from portal.security.tenancy import scoped
from portal.web.pagination import Page, paginate

logger = logging.getLogger(__name__)


def trash_file(actor: Actor, file: File, *, bypass: bool = False, bypass_reason: str | None = None) -> File:
    """Move a file to the trash (reversible until purged), if retention and holds allow it."""
    from portal.compliance.policy import assert_may_delete

    require_live(file)
    assert_may_delete(file, actor, action="trash", bypass=bypass, bypass_reason=bypass_reason)
    file.deleted_at = utcnow()
    file.deleted_by_id = actor.user_id
    db.session.flush()
    record("file.deleted", actor, target_type="file", target_id=file.id, target_label=file.name)
    return file


def restore_from_trash(actor: Actor, file: File) -> File:
    """Bring a trashed file back where it was (its armoire root if its folder is gone)."""
    if file.purged_at is not None or file.deleted_at is None:
        raise NotFound(_("Ce fichier n'est pas dans la corbeille."))
    file.deleted_at = None
    file.deleted_by_id = None
    db.session.flush()
    record("file.restored", actor, target_type="file", target_id=file.id, target_label=file.name)
    return file


def list_trash(organization_id: int, page: object = 1, per_page: int = 25) -> Page[File]:
    """Files in the trash, most recently deleted first."""
    statement = scoped(File, organization_id).where(File.deleted_at.is_not(None), File.purged_at.is_(None))
    return paginate(statement.order_by(File.deleted_at.desc(), File.id), page, per_page)


def purge_file(
    actor: Actor, file: File, reason: str = "purge", *, bypass: bool = False, bypass_reason: str | None = None
) -> list[str]:
    """Crypto-shred every version of a trashed file; returns blob keys to delete after commit.

    Raises ShredNotRecorded, having changed nothing, when the shred ledger file cannot be
    written: the file stays in the trash until it can be. Raises DeletionRefused (423),
    having changed nothing, when retention or a legal hold forbids it.
    """
    from portal.compliance.policy import assert_may_delete
    from portal.crypto.envelope import shred_data_keys
    from portal.crypto.errors import LedgerUnavailable

    if file.purged_at is not None or file.deleted_at is None:
        raise NotFound(_("Seul un fichier de la corbeille peut être détruit."))
    action = {"retention": "retention_purge", "disposition": "disposition"}.get(reason, "purge")
    assert_may_delete(file, actor, action=action, bypass=bypass, bypass_reason=bypass_reason)
    versions = list_versions(file)
    try:
        shred_data_keys(
            [
                (version.data_key, file.id, version.id)
                for version in versions
                if version.data_key is not None and version.data_key.wrapped_key is not None
            ],
            reason=reason,
        )
    except LedgerUnavailable as error:
        logger.error("file %s not purged: %s", file.id, error)
        raise ShredNotRecorded(
            _(
                "« %(name)s » n'a pas été détruit : le registre des destructions ne peut pas être écrit "
                "sur le serveur. Le fichier reste dans la corbeille ; prévenez l'administrateur.",
                name=file.name,
            )
        ) from None
    keys: list[str] = []
    for version in versions:
        if version.storage_key:
            keys.append(version.storage_key)
            # No row names the blob any more: a crash before deletion leaves an orphan
            # (undecryptable) that check-storage --fix removes.
            version.storage_key = None
    file.purged_at = utcnow()
    db.session.flush()
    record(
        "file.purged",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"versions": len(versions), "reason": reason},
    )
    return keys


def purge_expired_trash(now: datetime, retention_days: int) -> list[str]:
    """Purge every file trashed before ``now - retention_days`` (system actor per organisation).

    A file whose destruction cannot be recorded is skipped (purge_file logged why) and
    stays in the trash for the next run; one under retention or a legal hold stays too, and
    the refusal is journalled; the others are purged.
    """
    from portal.compliance.errors import DeletionRefused
    from portal.compliance.policy import record_refusal

    limit = now - timedelta(days=retention_days)
    files = db.session.execute(
        select(File).where(File.deleted_at.is_not(None), File.deleted_at < limit, File.purged_at.is_(None))
    ).scalars()
    keys: list[str] = []
    for file in list(files):
        try:
            with db.session.begin_nested():
                keys.extend(purge_file(Actor.system(file.organization_id), file, reason="retention"))
        except ShredNotRecorded:
            continue
        except DeletionRefused as refusal:
            record_refusal(Actor.system(file.organization_id), refusal)
    return keys
