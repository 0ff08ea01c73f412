"""Billing fixtures: the FeexPay simulator (a real HTTP server on loopback) and the seeded plans."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from portal.billing.simulator import API_KEY, SHOP_ID, Simulator
from portal.extensions import db
from tests.auth.support import Inbox, smtp_server  # noqa: F401 - fixture
from tests.conftest import ROOT, csrf


def migration_plans() -> list[dict]:
    """The plans the migration seeds: tests build the schema with create_all, so they seed the same rows."""
    path = ROOT / "migrations" / "versions" / "b2b111e50001_billing.py"
    spec = importlib.util.spec_from_file_location("billing_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PLANS


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator(settle_after=0).start()
    yield sim
    sim.stop()


@pytest.fixture
def app(app_factory, simulator: Simulator) -> Iterator[Flask]:
    from portal.billing.models import Plan

    app = app_factory(
        FEEXPAY_BASE_URL=simulator.base_url, FEEXPAY_API_KEY=API_KEY, FEEXPAY_SHOP_ID=SHOP_ID, FEEXPAY_TIMEOUT=2
    )
    with app.app_context():
        for row in migration_plans():
            db.session.add(Plan(**row))
        db.session.commit()
        yield app


def choose(client, plan: str = "essentiel", period: str = "mensuel"):
    return client.post(
        "/abonnement/choisir", data={"csrf_token": csrf(client, "/abonnement"), "plan": plan, "period": period}
    )


def pay(
    client,
    plan: str = "essentiel",
    period: str = "mensuel",
    phone: str = "2290197123456",
    network: str = "mtn",
    method: str = "mobile",
):
    return client.post(
        "/abonnement/payer",
        data={
            "csrf_token": csrf(client, "/abonnement"),
            "plan": plan,
            "period": period,
            "method": method,
            "network": network,
            "phone": phone,
        },
    )


def run_concurrently(app: Flask, runs: int, job: Callable[[], object]) -> list[object]:
    """Start ``job`` in ``runs`` threads at once, each in its own app context and write
    transaction (committed); their results, or the exceptions they raised."""
    from portal.database import write_transaction

    barrier = threading.Barrier(runs)
    results: list[object] = []

    def run() -> None:
        try:
            with app.app_context():
                barrier.wait()
                with write_transaction():
                    results.append(job())
                    db.session.commit()
                db.session.remove()
        except BaseException as error:  # reported by the caller: a thread's assertion would be lost
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.fixture
def inbox(app, smtp_server) -> Inbox:  # noqa: F811
    """The loopback SMTP server's inbox, with the portal sending to it (the reminders' links absolute)."""
    inbox, port = smtp_server
    inbox.messages.clear()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_STARTTLS=False, COFFRE_BASE_URL="https://coffre.test")
    return inbox
