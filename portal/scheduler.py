"""Background jobs (APScheduler): trash purge, journal checkpoints, …

Features declare jobs with ``@scheduled_job(...)`` at import time; ``init_app`` starts one
scheduler per process when ``SCHEDULER_ENABLED`` is on. Each job runs inside an app
context and gets no request: services take an ``Actor.system(...)`` instead.

Exactly once per period, whatever the number of processes (N gunicorn workers, N
instances): before running, a process claims the job's current period by inserting
(job, period) into ``planification_executions``, whose primary key lets one insert
win on SQLite and PostgreSQL alike; the others see the conflict and skip. The period is
the UTC day for cron jobs (they all fire at the same wall time) and the interval's slot
of the epoch for interval jobs (processes started at different times fire at different
offsets, but each slot is claimed once).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import UTCDateTime, utcnow
from portal.extensions import db

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    func: Callable[[], Any]
    trigger: str
    options: dict[str, Any] = field(default_factory=dict)


JOBS: list[JobSpec] = []
# Claims older than this are pruned by the claiming process itself.
CLAIM_RETENTION_DAYS = 30


class JobRun(db.Model):
    """One claimed period of one job: the row's existence means "someone ran it"."""

    __tablename__ = "planification_executions"

    job: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(40), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    claimed_by: Mapped[str] = mapped_column(String(120))


def period_of(spec: JobSpec, now: datetime) -> str:
    if spec.trigger == "interval":
        seconds = timedelta(
            **{k: v for k, v in spec.options.items() if k in ("weeks", "days", "hours", "minutes", "seconds")}
        ).total_seconds()
        return f"i{int(now.timestamp() // max(1.0, seconds))}"
    return now.strftime("d%Y-%m-%d")


def claim(spec: JobSpec, now: datetime | None = None) -> bool:
    """Insert this period's claim and commit it; False when another process has it."""
    from sqlalchemy.exc import IntegrityError

    now = now or utcnow()
    db.session.add(
        JobRun(
            job=spec.func.__qualname__,
            period=period_of(spec, now),
            claimed_at=now,
            claimed_by=f"{socket.gethostname()[:100]}:{os.getpid()}",
        )
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    db.session.execute(db.delete(JobRun).where(JobRun.claimed_at < now - timedelta(days=CLAIM_RETENTION_DAYS)))
    db.session.commit()
    return True


def scheduled_job(trigger: str, **options: Any) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Declare ``func`` as a periodic job (APScheduler trigger name and its options)."""

    def decorator(func: Callable[[], Any]) -> Callable[[], Any]:
        JOBS.append(JobSpec(func, trigger, options))
        return func

    return decorator


def run_job(app: Flask, func: Callable[[], Any], spec: JobSpec | None = None) -> None:
    """Run one job in an app context unless another process claimed this period; a failure
    is logged and rolled back, never fatal."""
    from portal.database import write_transaction

    with app.app_context(), write_transaction():
        try:
            if spec is not None and not claim(spec):
                logger.debug("scheduled job %s: this period ran elsewhere", func.__name__)
                return
            func()
            db.session.commit()
        except Exception:
            db.session.rollback()
            logger.exception("scheduled job %s failed", func.__name__)
        finally:
            db.session.remove()


def _add_jobs(scheduler: Any, app: Flask) -> None:
    for job in JOBS:
        scheduler.add_job(run_job, job.trigger, args=(app, job.func, job), id=job.func.__qualname__, **job.options)


def init_app(app: Flask) -> None:
    import click

    @app.cli.command("scheduler")
    def scheduler_command() -> None:
        """Run the background jobs in the foreground (the deployment's scheduler process)."""
        from apscheduler.schedulers.blocking import BlockingScheduler

        background = app.extensions.pop("scheduler", None)
        if background is not None:
            background.shutdown(wait=False)  # this process runs the jobs in the foreground instead
        blocking = BlockingScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
        _add_jobs(blocking, app)
        click.echo(f"scheduler: {len(JOBS)} job(s), one run per period across every process")
        blocking.start()

    if not app.config.get("SCHEDULER_ENABLED") or app.config.get("TESTING"):
        return
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    _add_jobs(scheduler, app)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
