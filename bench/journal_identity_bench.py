"""Cost of hash version 2 (keyed label digests) against version 1, in one process.

Writes ``--count`` entries through ``record`` (version 2: an HMAC per label) and the same
number the version-1 way (the label hashed as it is, as the seeds still insert), each into
its own organisation's chain of a throwaway SQLite database, then verifies both chains.
Prints the times and the v2/v1 ratios; nothing is asserted.

    .venv/bin/python bench/journal_identity_bench.py --count 20000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="coffre-identity-bench-"))
    os.environ["COFFRE_INSTANCE_DIR"] = str(workdir)
    from portal import create_app
    from portal.audit.context import Actor
    from portal.audit.models import AuditChainHead, AuditEntry
    from portal.audit.services import GENESIS_HASH, canonical_content, compute_hash, record
    from portal.audit.verification import verify_chain
    from portal.database import utcnow, write_transaction
    from portal.extensions import db
    from portal.organizations.models import Organization

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}", "TESTING": True, "SCHEDULER_ENABLED": False}
    )
    with app.app_context(), write_transaction():
        db.create_all()
        v1_org, v2_org = Organization(name="v1"), Organization(name="v2")
        db.session.add_all([v1_org, v2_org])
        db.session.commit()

        started = time.perf_counter()
        prev = GENESIS_HASH
        rows = []
        for seq in range(1, args.count + 1):
            fields = {
                "chain_id": v1_org.id,
                "seq": seq,
                "organization_id": v1_org.id,
                "user_id": None,
                "action": "file.added",
                "target_type": "file",
                "target_id": seq,
                "target_label": f"document-{seq:06d}.pdf",
                "created_at": utcnow(),
                "ip": "192.0.2.1",
                "user_agent": "bench",
                "details": None,
            }
            entry_hash = compute_hash(prev, canonical_content(**fields))
            rows.append({**fields, "prev_hash": prev, "entry_hash": entry_hash, "hash_version": 1})
            prev = entry_hash
        db.session.execute(db.insert(AuditEntry), rows)
        db.session.add(AuditChainHead(chain_id=v1_org.id, seq=args.count, head_hash=prev))
        db.session.commit()
        v1_write = time.perf_counter() - started

        actor = Actor(v2_org.id, None, ip="192.0.2.1", user_agent="bench")
        started = time.perf_counter()
        for seq in range(1, args.count + 1):
            record("file.added", actor, target_type="file", target_id=seq, target_label=f"document-{seq:06d}.pdf")
            if seq % 1000 == 0:
                db.session.commit()
        db.session.commit()
        v2_record = time.perf_counter() - started

        timings = {}
        for name, org in (("v1", v1_org), ("v2", v2_org)):
            started = time.perf_counter()
            result = verify_chain(org.id, checkpoint=False)
            timings[name] = time.perf_counter() - started
            assert result.ok and result.entries_checked == args.count, result.problem
        db.session.rollback()

        # Hashing alone, without the database: the part version 2 changes.
        from portal.crypto.identity import identity_digest

        started = time.perf_counter()
        for seq in range(args.count):
            identity_digest(f"document-{seq:06d}.pdf")
        digest_only = time.perf_counter() - started

    print(f"entries per chain: {args.count}")
    print(f"v1 bulk insert (no record()): {v1_write:.2f} s (not comparable: one INSERT, no head updates)")
    print(f"v2 record() one by one:       {v2_record:.2f} s ({v2_record / args.count * 1e6:.0f} µs per entry)")
    print(f"identity_digest alone:        {digest_only / args.count * 1e6:.1f} µs per label")
    print(
        f"verify v1: {timings['v1']:.2f} s   verify v2: {timings['v2']:.2f} s   ratio v2/v1: "
        f"{timings['v2'] / timings['v1']:.2f}"
    )


if __name__ == "__main__":
    main()
