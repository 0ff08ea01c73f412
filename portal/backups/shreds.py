"""A purge reaches every backup: once a shred commits, its wrapped key leaves the repository.

The manifests keep the ciphertext and name the key by uid only; the wrapped key is a file of
its own (see repository.py). Shreds are collected at flush and their key files deleted after
the commit, so a purge that rolls back keeps them. Anything missed here (a crash between the
commit and the delete) is caught by ``reconcile_backup_keys`` before every restore.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.crypto.models import ShredRecord

logger = logging.getLogger(__name__)
_PENDING = "coffre_backup_shreds"


@event.listens_for(Session, "after_flush")
def _collect(session: Session, _context) -> None:
    for obj in session.new:
        if isinstance(obj, ShredRecord):
            session.info.setdefault(_PENDING, []).append((obj.organization_id, obj.data_key_uid))


@event.listens_for(Session, "after_commit")
def _delete_keys(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    from flask import has_app_context

    if not has_app_context():
        return
    from portal.backups.repository import get_repository

    try:
        repository = get_repository()
        for organization_id, uid in pending:
            repository.delete_key(organization_id, uid)
    except Exception:
        logger.exception("could not remove shredded keys from the backups; the next restore removes them")


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
