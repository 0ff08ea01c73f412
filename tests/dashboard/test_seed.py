"""The benchmark seeding command: a verifiable journal and rollups equal to a recount."""

from __future__ import annotations

import sqlalchemy as sa

from portal.audit.verification import verify_chain
from portal.dashboard import rollups, services
from portal.extensions import db


def test_seed_command_builds_consistent_figures(app):
    result = app.test_cli_runner().invoke(args=["dashboard", "seed", "--entries", "3000", "--files", "400"])
    assert result.exit_code == 0, result.output
    org_id = int(result.output.split()[1].rstrip(":"))
    assert verify_chain(org_id).ok
    db.session.rollback()
    assert rollups.stored(org_id) == rollups.recount(org_id)
    figures = services.global_figures(org_id, 365)
    assert figures.documents == 392  # every 50th file is in the trash
    assert figures.versions == 392
    assert sum(day["downloads"] for day in figures.activity) > 0


def test_seed_is_refused_in_production(app):
    app.config["COFFRE_ENV"] = "production"
    result = app.test_cli_runner().invoke(args=["dashboard", "seed", "--entries", "10", "--files", "1"])
    assert result.exit_code != 0 and "production" in result.output


def test_seed_leaves_the_tables_as_autovacuum_would(app):
    """Statistics for the planner and, on PostgreSQL, a visibility map: without it the
    rollups' covering indexes are not read index-only right after a seed."""
    result = app.test_cli_runner().invoke(args=["dashboard", "seed", "--entries", "3000", "--files", "400"])
    assert result.exit_code == 0, result.output
    if db.engine.dialect.name == "postgresql":
        visible = db.session.execute(
            sa.text("SELECT relallvisible FROM pg_class WHERE relname = 'tableau_bord_fichiers'")
        ).scalar_one()
        assert visible > 0
    else:
        analysed = (
            db.session.execute(sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")).scalar_one()
            and db.session.execute(
                sa.text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'tableau_bord_fichiers'")
            ).scalar_one()
        )
        assert analysed
