"""Checking a chain: recompute every hash, follow every link, compare with checkpoints.

Entries are streamed in batches ordered by (seq, id), so a journal of millions of rows
is verified in constant memory. The first problem is named by kind and position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from portal.audit.checkpoints import last_checkpointed_seqs, read_checkpoints, write_checkpoint
from portal.audit.context import Actor
from portal.audit.models import AuditChainHead, AuditEntry
from portal.audit.services import GENESIS_HASH, PLATFORM_CHAIN, entry_intact, record
from portal.extensions import db

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000

ALTERED = "altered"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
TRUNCATED = "truncated"
BAD_CHECKPOINT_SIGNATURE = "bad_checkpoint_signature"

_COLUMNS = (
    AuditEntry.id,
    AuditEntry.chain_id,
    AuditEntry.seq,
    AuditEntry.organization_id,
    AuditEntry.user_id,
    AuditEntry.action,
    AuditEntry.target_type,
    AuditEntry.target_id,
    AuditEntry.target_label,
    AuditEntry.created_at,
    AuditEntry.ip,
    AuditEntry.user_agent,
    AuditEntry.details,
    AuditEntry.prev_hash,
    AuditEntry.entry_hash,
    AuditEntry.hash_version,
    AuditEntry.label_digest,
    AuditEntry.label_proof,
    AuditEntry.label_sealed,
)


@dataclass(frozen=True)
class Problem:
    kind: str
    seq: int | None
    entry_id: int | None
    message: str


@dataclass
class VerificationResult:
    chain_id: int
    entries_checked: int = 0
    head_seq: int = 0
    # Seq of the signed checkpoint an incremental verification started from (0: from genesis).
    from_seq: int = 0
    problem: Problem | None = None
    checkpoint: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _stream(chain_id: int, after_seq: int = 0) -> Iterator[Any]:
    """Entries in (seq, id) order, in batches.

    The bound is ``seq >= last seq`` (a plain index range on both backends; an OR on
    (seq, id) defeats PostgreSQL's planner) and rows already yielded are skipped, so a
    forged duplicate seq straddling two batches is still seen.
    """
    last_seq = after_seq + 1 if after_seq else 0
    seen_at_last: set[int] = set()
    while True:
        rows = db.session.execute(
            select(*_COLUMNS)
            .where(AuditEntry.chain_id == chain_id, AuditEntry.seq >= last_seq)
            .order_by(AuditEntry.seq, AuditEntry.id)
            .limit(BATCH_SIZE + len(seen_at_last))
        ).all()
        fresh = [row for row in rows if not (row.seq == last_seq and row.id in seen_at_last)]
        yield from fresh
        if len(rows) < BATCH_SIZE + len(seen_at_last) or not fresh:
            return
        last_seq = rows[-1].seq
        seen_at_last = {row.id for row in rows if row.seq == last_seq}


def _head(chain_id: int) -> tuple[int, str]:
    row = db.session.execute(
        select(AuditChainHead.seq, AuditChainHead.head_hash).where(AuditChainHead.chain_id == chain_id)
    ).first()
    return (row.seq, row.head_hash) if row else (0, GENESIS_HASH)


def verify_chain(chain_id: int, *, checkpoint: bool = True, since_checkpoint: bool = False) -> VerificationResult:
    """Verify one chain; when it verifies (and ``checkpoint``), anchor its head.

    ``since_checkpoint`` trusts the newest signed checkpoint that the entry at its seq
    still matches and checks only what follows: bounded work for a page, while the CLI
    verifies everything from the genesis.
    """
    result = VerificationResult(chain_id=chain_id)
    head_seq, head_hash = _head(chain_id)
    result.head_seq = head_seq

    anchors: dict[int, str] = {}
    bad_signature: Problem | None = None
    for cp in read_checkpoints(chain_id):
        if not cp.valid_signature:
            bad_signature = bad_signature or Problem(
                BAD_CHECKPOINT_SIGNATURE,
                cp.seq,
                None,
                f"checkpoint line {cp.line} (seq {cp.seq}) has an invalid signature",
            )
            continue
        anchors[cp.seq] = cp.head_hash
    newest_anchor = max(anchors, default=0)

    prev_seq, prev_hash, prev_id = 0, GENESIS_HASH, 0
    before_prev_hash: str | None = None
    if since_checkpoint and newest_anchor:
        start = db.session.execute(
            select(*_COLUMNS).where(AuditEntry.chain_id == chain_id, AuditEntry.seq == newest_anchor)
        ).first()
        if start is None or start.entry_hash != anchors[newest_anchor]:
            result.problem = Problem(
                TRUNCATED,
                newest_anchor,
                start.id if start else None,
                f"entry seq {newest_anchor} is missing or differs from its signed checkpoint",
            )
            return result
        if not entry_intact(start):
            result.problem = Problem(ALTERED, start.seq, start.id, f"entry seq {start.seq} (id {start.id}) was altered")
            return result
        prev_seq, prev_hash, prev_id, before_prev_hash = start.seq, start.entry_hash, start.id, start.prev_hash
        result.from_seq = newest_anchor
    rows = _stream(chain_id, prev_seq)
    pending: list[Any] = []

    def next_row() -> Any | None:
        if pending:
            return pending.pop()
        return next(rows, None)

    def peek() -> Any | None:
        if not pending:
            row = next(rows, None)
            if row is None:
                return None
            pending.append(row)
        return pending[-1]

    while (row := next_row()) is not None:
        expected = prev_seq + 1
        link_ok = row.prev_hash == prev_hash
        self_ok = entry_intact(row)
        if link_ok and self_ok and row.seq == expected:
            anchored = anchors.get(row.seq)
            if anchored is not None and anchored != row.entry_hash:
                result.problem = Problem(
                    TRUNCATED,
                    row.seq,
                    row.id,
                    f"entry seq {row.seq} differs from its signed checkpoint: "
                    "the journal was cut back and rewritten from there",
                )
                return result
            result.entries_checked += 1
            before_prev_hash, prev_seq, prev_hash, prev_id = prev_hash, row.seq, row.entry_hash, row.id
            continue
        result.problem = _diagnose(row, expected, prev_seq, prev_hash, prev_id, before_prev_hash, head_seq, peek())
        return result

    last_seq = prev_seq
    if last_seq < newest_anchor:
        result.problem = Problem(
            TRUNCATED,
            last_seq + 1,
            None,
            f"the journal ends at seq {last_seq} but a signed checkpoint vouches for seq {newest_anchor}",
        )
    elif last_seq < head_seq:
        result.problem = Problem(
            TRUNCATED, last_seq + 1, None, f"the journal ends at seq {last_seq} but its head is at seq {head_seq}"
        )
    elif last_seq == head_seq and last_seq and prev_hash != head_hash:
        result.problem = Problem(ALTERED, last_seq, prev_id, f"entry seq {last_seq} does not match the chain head")
    elif last_seq > head_seq:
        # Rows may have been appended meanwhile by writers that committed after we began.
        head_seq, head_hash = _head(chain_id)
        result.head_seq = head_seq
        if last_seq > head_seq:
            result.problem = Problem(
                INSERTED, head_seq + 1, None, f"entries after seq {head_seq} exist beyond the chain head"
            )
    if result.problem is None and bad_signature is not None:
        result.problem = bad_signature
    if result.ok and checkpoint and last_seq:
        result.checkpoint = write_checkpoint(chain_id, last_seq, prev_hash)
    return result


def _diagnose(
    row: Any,
    expected: int,
    prev_seq: int,
    prev_hash: str,
    prev_id: int,
    before_prev_hash: str | None,
    head_seq: int,
    following: Any | None,
) -> Problem:
    """Name what broke the chain at ``row``, the first entry that does not follow."""
    link_ok = row.prev_hash == prev_hash
    if not link_ok and before_prev_hash is not None and row.prev_hash == before_prev_hash:
        # This entry links to the one before the previous: the previous one was slipped in.
        return Problem(INSERTED, prev_seq, prev_id, f"entry seq {prev_seq} (id {prev_id}) was inserted into the chain")
    if following is not None and following.prev_hash == prev_hash and following.seq != row.seq:
        return Problem(INSERTED, row.seq, row.id, f"entry seq {row.seq} (id {row.id}) was inserted into the chain")
    if row.seq < expected:
        return Problem(INSERTED, row.seq, row.id, f"entry id {row.id} reuses seq {row.seq}")
    if row.seq > head_seq and head_seq >= prev_seq:
        return Problem(INSERTED, row.seq, row.id, f"entry seq {row.seq} (id {row.id}) lies beyond the chain head")
    if row.seq > expected and not link_ok:
        missing = f"{expected}" if row.seq == expected + 1 else f"{expected}–{row.seq - 1}"
        return Problem(DELETED, expected, row.id, f"entry seq {missing} is missing (deleted before id {row.id})")
    if prev_id and row.id < prev_id:
        return Problem(REORDERED, row.seq, row.id, f"entry seq {row.seq} (id {row.id}) is out of order")
    if not link_ok and entry_intact(row):
        return Problem(DELETED, expected, row.id, f"an entry between seq {prev_seq} and id {row.id} was removed")
    if link_ok and row.seq != expected:
        return Problem(INSERTED, row.seq, row.id, f"entry seq {row.seq} (id {row.id}) breaks the numbering")
    return Problem(ALTERED, row.seq, row.id, f"entry seq {row.seq} (id {row.id}) was altered")


def chain_ids() -> list[int]:
    return list(db.session.execute(select(AuditChainHead.chain_id).order_by(AuditChainHead.chain_id)).scalars())


def chain_length(chain_id: int) -> int:
    return _head(chain_id)[0]


@dataclass
class CheckpointRun:
    written: int = 0
    refused: list[VerificationResult] = field(default_factory=list)


def checkpoint_advanced_chains() -> CheckpointRun:
    """Anchor the head of every chain that moved since its last checkpoint, once verified.

    A signature vouches for everything up to the head, and the incremental badge starts
    from the newest one: signing an unverified head would launder any tampering done since
    the previous checkpoint. So each advanced chain is verified from its newest checkpoint
    (from the genesis when it has none) and only signed when intact. A refusal is logged
    and journalled in the current transaction (the caller commits).
    """
    run = CheckpointRun()
    latest = last_checkpointed_seqs()
    heads = db.session.execute(select(AuditChainHead.chain_id, AuditChainHead.seq).order_by(AuditChainHead.chain_id))
    for chain_id, seq in heads.all():
        if seq <= latest.get(chain_id, 0):
            continue
        result = verify_chain(chain_id, since_checkpoint=True)
        if result.ok:
            run.written += result.checkpoint is not None
            continue
        problem = result.problem
        assert problem is not None
        logger.error(
            "journal: chain %d not checkpointed, verification failed: %s at seq %s (entry id %s): %s",
            chain_id,
            problem.kind,
            problem.seq,
            problem.entry_id,
            problem.message,
        )
        organization_id = None if chain_id == PLATFORM_CHAIN else chain_id
        record(
            "journal.checkpoint_refused",
            Actor.system(organization_id),
            details={"kind": problem.kind, "seq": problem.seq, "entry_id": problem.entry_id},
        )
        run.refused.append(result)
    return run
