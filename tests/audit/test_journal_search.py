"""The free-text filter uses the trigram index on each backend and keeps the scan's results."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.audit import queries
from portal.audit.models import AuditEntry
from portal.extensions import db
from tests.audit.helpers import add_entries

LABELS = (
    "Facture été 2025.pdf",
    "École primaire",
    "école primaire",
    "ÉCOLE",
    "Rapport 100% final",
    "Rapport 1000 final",
    "a_b_c.txt",
    "axbxc.txt",
    "x'y\"z",
    "Straße 12",
    "İstanbul",
    "  espaces   doubles ",
    "Devis-2025-courant.pdf",
    "devis-2025-RARISSIME.pdf",
)
QUERIES = (
    "é", "ÉCO", "éco", "eco", "école", "100%", "100", "_b_", "a_b", "x'y\"", '"', "y\"z", "straße", "stra",
    "İst", "ist", "rap", "ra", "rt 1", "  d", "2025", "rarissime", "RARISSIME", "devis-2025-", "zzz", "%", "_",
)  # fmt: skip


def _scan(org_id: int, text: str) -> list[int]:
    """The filter as it was before the index: the plain predicate, newest first."""
    pattern = f"%{queries._escape_like(text.lower())}%"
    return list(
        db.session.execute(
            sa.select(AuditEntry.id)
            .where(
                AuditEntry.organization_id == org_id, sa.func.lower(AuditEntry.target_label).like(pattern, escape="\\")
            )
            .order_by(AuditEntry.id.desc())
        ).scalars()
    )


def _paged(org_id: int, text: str) -> list[int]:
    found, before = [], None
    while True:
        page = queries.journal_page(org_id, queries.JournalFilter(text=text), before, size=2)
        found += [entry.id for entry in page.items]
        if page.next_before is None:
            return found
        before = page.next_before


@pytest.fixture
def labelled(org, admin, make_org):
    for label in LABELS:
        add_entries(org, admin, 2, label=label)
    # Another organisation's entries match too: the index must not leak or count them.
    add_entries(make_org("Organisation B"), None, 3, label="Rapport 100% final")
    return org


@pytest.mark.parametrize("text", QUERIES)
def test_indexed_search_gives_the_scans_results(app, labelled, text):
    expected = _scan(labelled.id, text)
    assert _paged(labelled.id, text) == expected
    exported = [row.id for row in queries.iter_entries(labelled.id, queries.JournalFilter(text=text), batch=3)]
    assert exported == expected


def test_entries_without_label_and_later_changes_stay_consistent(app, org, admin):
    from portal.audit.context import Actor
    from portal.audit.services import record

    record("user.login", Actor(org.id, admin.id))
    entry = add_entries(org, admin, 1, label="Ancien nom.pdf")[0]
    # Only tampering updates an entry; the index must still follow (triggers on update and delete).
    db.session.execute(
        sa.text("UPDATE journal_activite SET target_label = 'Nouveau nom.pdf' WHERE id = :id"), {"id": entry.id}
    )
    db.session.commit()
    assert _paged(org.id, "nouveau") == [entry.id] and _paged(org.id, "ancien") == []
    db.session.execute(sa.text("DELETE FROM journal_activite WHERE id = :id"), {"id": entry.id})
    db.session.commit()
    assert _paged(org.id, "nouveau") == []


def _bulk_entries(org_id: int, count: int) -> None:
    """Rows for the planner only (no hash chain): a label search is about target_label."""
    db.session.execute(
        sa.text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO journal_activite (organization_id, chain_id, seq, action, target_label, created_at, "
            "prev_hash, entry_hash) SELECT :org, :org, i, 'file.added', "
            "'Rapport-' || i || CASE WHEN i % 1000 = 0 THEN '-rarissime' ELSE '-courant' END, "
            ":at, 'x', 'x' FROM n"
        ),
        {"count": count, "org": org_id, "at": "2026-01-01 00:00:00"},
    )
    db.session.commit()
    db.session.execute(sa.text("ANALYZE"))
    db.session.commit()


def test_label_search_uses_the_index(app, org):
    _bulk_entries(org.id, 20_000)
    executed: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        executed.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        page = queries.journal_page(org.id, queries.JournalFilter(text="rarissime"))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    assert len(page.items) == 20
    statement, parameters = next((sql, params) for sql, params in executed if "journal_activite" in sql)
    with db.engine.connect() as connection:
        if db.engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plan = " / ".join(row[3] for row in rows)
            # The FTS table drives the join, newest first: no walk over the organisation's entries.
            assert plan.startswith("SCAN journal_activite_fts VIRTUAL TABLE"), plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            assert "ix_journal_activite_label_trgm" in plan, plan
