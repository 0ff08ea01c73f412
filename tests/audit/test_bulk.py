"""A chain written in bulk (COPY on PostgreSQL) verifies and reads back like recorded entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.audit import bulk
from portal.audit.context import Actor
from portal.audit.models import AuditChainHead, AuditEntry
from portal.audit.services import record
from portal.audit.verification import verify_chain
from portal.extensions import db


def _entries(org_id: int, user_id: int, count: int, *, skip: int | None = None):
    start = datetime(2026, 1, 1, 8, 30, tzinfo=UTC)
    for seq in range(1, count + 1):
        yield {
            "chain_id": org_id,
            "seq": seq + 1 if skip is not None and seq >= skip else seq,
            "organization_id": org_id,
            "user_id": user_id if seq % 2 else None,
            "action": "file.added" if seq % 3 else "user.login",
            "target_type": "file",
            "target_id": seq,
            # What COPY's text format must escape: a tab, a backslash, a newline; and accents.
            "target_label": f"Relevé\t{seq}\\été\n.pdf" if seq % 4 else None,
            "created_at": start + timedelta(minutes=seq, microseconds=seq),
            "ip": "192.0.2.7",
            "user_agent": "pytest",
            "details": {"armoire": seq, "nom": "Comptabilité"} if seq % 5 else None,
        }


def test_a_bulk_chain_verifies_and_continues(app, org, admin):
    assert bulk.write_chain(org.id, _entries(org.id, admin.id, 30)) == 30
    db.session.commit()
    assert verify_chain(org.id).ok
    rows = db.session.execute(
        sa.select(AuditEntry).where(AuditEntry.organization_id == org.id).order_by(AuditEntry.seq)
    )
    read_back = [{name: getattr(entry, name) for name in bulk.FIELDS} for entry in rows.scalars()]
    assert read_back == list(_entries(org.id, admin.id, 30))
    # The head is where record() expects it: the next entry links to the bulk chain.
    record("file.renamed", Actor(org.id, admin.id), target_type="file", target_id=1, target_label="a.pdf")
    db.session.commit()
    assert db.session.get(AuditChainHead, org.id).seq == 31
    assert verify_chain(org.id).ok


def test_a_misnumbered_entry_writes_nothing(app, org, admin):
    with pytest.raises(ValueError, match="entry 12"):
        bulk.write_chain(org.id, _entries(org.id, admin.id, 30, skip=12))
    db.session.rollback()
    count = db.session.execute(sa.select(sa.func.count()).where(AuditEntry.organization_id == org.id)).scalar_one()
    assert count == 0
    assert db.session.get(AuditChainHead, org.id) is None
