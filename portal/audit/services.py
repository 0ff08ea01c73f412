"""Writing the journal.

``record`` adds an entry to the caller's transaction: the entry commits or rolls back
with the action it records. Entries of one organisation form a SHA-256 hash chain; the
chain head row is updated *before* the entry is computed, which takes the row lock on
PostgreSQL (and the write lock on SQLite, whose transactions begin IMMEDIATE), so two
writers queue instead of forking the chain.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam

from portal.audit.actions import ACTIONS
from portal.audit.context import Actor
from portal.audit.models import AuditChainHead, AuditEntry
from portal.database import dialect_insert, utcnow
from portal.extensions import db

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = 0
# New entries chain a keyed digest of their label (see portal.crypto.identity); version 1
# entries, which chain the label itself, keep verifying as they were written.
HASH_VERSION = 2
LABEL_SEAL = "journal-label"
_MAX_LABEL = 300
_MAX_AGENT = 300


def chain_id_for(organization_id: int | None) -> int:
    return organization_id or PLATFORM_CHAIN


def canonical_content(
    *,
    chain_id: int,
    seq: int,
    organization_id: int | None,
    user_id: int | None,
    action: str,
    target_type: str | None,
    target_id: int | None,
    target_label: str | None,
    created_at: datetime,
    ip: str | None,
    user_agent: str | None,
    details: dict[str, Any] | None,
    hash_version: int = 1,
    label_digest: str | None = None,
) -> bytes:
    """The exact bytes an entry's hash covers (besides the previous hash).

    Version 1 covers the label; version 2 covers ``label_digest`` in its place (and says
    so in the payload, so a version-1 entry cannot be passed off as a version-2 one).
    """
    payload: dict[str, Any] = {
        "chain": chain_id,
        "seq": seq,
        "org": organization_id,
        "user": user_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "label": target_label,
        "at": created_at.isoformat(timespec="microseconds"),
        "ip": ip,
        "ua": user_agent,
        "details": details,
    }
    if hash_version >= 2:
        payload["v"] = hash_version
        payload["label"] = label_digest
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()


def original_label(entry: Any) -> str | None:
    """The label a version-1 entry was hashed with (unsealed when it was pseudonymised)."""
    if entry.label_sealed is None:
        return entry.target_label
    from portal.security import sealed

    return sealed.unseal(entry.label_sealed, label=LABEL_SEAL, bound_to=f"journal:{entry.id}")


def label_consistent(entry: Any) -> bool:
    """Whether the stored label is the one the chain vouches for, or its proven pseudonym.

    Version 2 only chains the label's digest, so the label itself is checked here: it
    must hash to the digest, or carry the server's proof that a pseudonymisation replaced
    that digest's label with it. Version 1 chains the label; a pseudonymised one (sealed
    original) must carry the proof too, else the displayed label could be edited freely.
    """
    from portal.crypto.identity import identity_digest, proof_matches

    version = entry.hash_version or 1
    if version >= 2:
        if entry.label_digest is None or entry.target_label is None:
            return entry.label_digest is None and entry.target_label is None and entry.label_proof is None
        if entry.label_proof is None:
            return identity_digest(entry.target_label) == entry.label_digest
        return proof_matches(entry.label_proof, entry.id, entry.label_digest, entry.target_label)
    if entry.label_sealed is None:
        return entry.label_proof is None
    if entry.label_proof is None or entry.target_label is None:
        return False
    original = original_label(entry)
    return original is not None and proof_matches(
        entry.label_proof, entry.id, identity_digest(original), entry.target_label
    )


def entry_intact(entry: Any) -> bool:
    """The entry's own hash holds and its label is the one vouched for."""
    from cryptography.exceptions import InvalidTag

    try:
        content = entry_content(entry)
        consistent = label_consistent(entry)
    except (ValueError, InvalidTag):  # a forged sealed label does not unseal: the entry is altered
        return False
    return consistent and compute_hash(entry.prev_hash, content) == entry.entry_hash


def entry_content(entry: Any) -> bytes:
    """The canonical content of a stored entry (an AuditEntry or a row of its columns)."""
    version = entry.hash_version or 1
    return canonical_content(
        hash_version=version,
        label_digest=entry.label_digest,
        chain_id=entry.chain_id,
        seq=entry.seq,
        organization_id=entry.organization_id,
        user_id=entry.user_id,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        target_label=entry.target_label if version >= 2 else original_label(entry),
        created_at=entry.created_at,
        ip=entry.ip,
        user_agent=entry.user_agent,
        details=entry.details,
    )


@functools.cache
def _chain_statements() -> tuple[Any, Any, Any]:
    """(advance the head, insert an entry, set the head's hash), built once: every write of
    the portal records an entry, and building and hashing these per entry cost more than
    running them (issue 10, D15)."""
    heads, entries = AuditChainHead.__table__, AuditEntry.__table__
    advance = (
        heads.update()
        .where(heads.c.chain_id == bindparam("chain"))
        .values(seq=heads.c.seq + 1)
        .returning(heads.c.seq, heads.c.head_hash)
    )
    set_head = heads.update().where(heads.c.chain_id == bindparam("chain")).values(head_hash=bindparam("head"))
    return advance, entries.insert().returning(entries.c.id), set_head


def _advance_head(chain_id: int) -> tuple[int, str]:
    """Reserve the next sequence number of a chain and return it with the previous hash."""
    statement = _chain_statements()[0]
    row = db.session.execute(statement, {"chain": chain_id}).first()
    if row is None:
        # First entry of this chain: create the head without racing a concurrent first.
        db.session.execute(
            dialect_insert(AuditChainHead, db.engine.dialect.name)
            .values(chain_id=chain_id, seq=0, head_hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["chain_id"])
        )
        row = db.session.execute(statement, {"chain": chain_id}).one()
    return row.seq, row.head_hash


def _clean(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text[:limit]


def record(
    action: str,
    actor: Actor,
    *,
    target_type: str | None = None,
    target_id: int | None = None,
    target_label: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one journal entry to the current transaction (flushed, not committed)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown journal action {action!r}")
    from portal.crypto.identity import identity_digest

    chain_id = chain_id_for(actor.organization_id)
    # The caller's pending changes first, as when the head's update was an ORM statement (it
    # autoflushed; these Core ones do not): the action's rows and their locks come before the
    # chain head's, in the order every writer takes them.
    db.session.flush()
    seq, prev_hash = _advance_head(chain_id)
    created_at = utcnow()
    label = _clean(target_label, _MAX_LABEL)
    fields = {
        "chain_id": chain_id,
        "seq": seq,
        "organization_id": actor.organization_id,
        "user_id": actor.user_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "target_label": label,
        "created_at": created_at,
        "ip": actor.ip,
        "user_agent": _clean(actor.user_agent, _MAX_AGENT),
        "details": details,
    }
    digest = identity_digest(label) if label is not None else None
    entry_hash = compute_hash(prev_hash, canonical_content(**fields, hash_version=HASH_VERSION, label_digest=digest))
    columns = {
        **fields,
        "prev_hash": prev_hash,
        "entry_hash": entry_hash,
        "hash_version": HASH_VERSION,
        "label_digest": digest,
        "label_proof": None,
        "label_sealed": None,
    }
    _advance, insert_entry, set_head = _chain_statements()
    # A Core insert, not a unit-of-work flush of a new object: a third of the entry's cost.
    # The entry handed back is not in the session (it never changes once written).
    entry_id = db.session.execute(insert_entry, columns).scalar_one()
    db.session.execute(set_head, {"chain": chain_id, "head": entry_hash})
    entry = AuditEntry(id=entry_id, **columns)
    # Imported here: the dashboard's models import the documents', which record entries.
    from portal.dashboard.rollups import count_entry

    # In this transaction, so the dashboard's figures never disagree with the journal.
    count_entry(entry)
    return entry


def record_security_event(action: str, *, details: dict[str, Any] | None = None) -> None:
    """Record a refused request in its own committed transaction.

    Called before the view has done anything, so committing here cannot publish half an
    action; the refusal must survive the 403/404 that follows.
    """
    from portal.web.context import current_actor

    # Read the actor first: after the rollback, the entry's write is then the transaction's
    # first statement, which SQLite lets wait for the write lock instead of failing.
    actor = current_actor()
    db.session.rollback()
    record(action, actor, details=details)
    db.session.commit()
