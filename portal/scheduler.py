"""Background jobs (APScheduler): trash purge, journal checkpoints, …

Features declare jobs with ``@scheduled_job(...)`` at import time; ``init_app`` starts one
scheduler per process when ``SCHEDULER_ENABLED`` is on. Each job runs inside an app
context and gets no request: services take an ``Actor.system(...)`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    func: Callable[[], Any]
    trigger: str
    options: dict[str, Any] = field(default_factory=dict)


JOBS: list[JobSpec] = []


def scheduled_job(trigger: str, **options: Any) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Declare ``func`` as a periodic job (APScheduler trigger name and its options)."""

    def decorator(func: Callable[[], Any]) -> Callable[[], Any]:
        JOBS.append(JobSpec(func, trigger, options))
        return func

    return decorator


def run_job(app: Flask, func: Callable[[], Any]) -> None:
    """Run one job in an app context; a failure is logged and rolled back, never fatal."""
    from portal.database import write_transaction
    from portal.extensions import db

    with app.app_context(), write_transaction():
        try:
            func()
            db.session.commit()
        except Exception:
            db.session.rollback()
            logger.exception("scheduled job %s failed", func.__name__)
        finally:
            db.session.remove()


def init_app(app: Flask) -> None:
    if not app.config.get("SCHEDULER_ENABLED") or app.config.get("TESTING"):
        return
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    for job in JOBS:
        scheduler.add_job(run_job, job.trigger, args=(app, job.func), id=job.func.__qualname__, **job.options)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
