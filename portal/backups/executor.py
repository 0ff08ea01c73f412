"""Where backup and restore work runs: the scheduler's executor when one runs in this
process, else a one-thread pool of the web process (the embedded default)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flask import Flask, current_app

logger = logging.getLogger(__name__)


def _run(app: Flask, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    from portal.extensions import db

    with app.app_context():
        try:
            func(*args)
        except Exception:
            db.session.rollback()
            logger.exception("background job %s failed", func.__name__)
        finally:
            db.session.remove()


def submit(func: Callable[..., Any], *args: Any) -> Future | None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler = app.extensions.get("scheduler")
    if scheduler is not None:
        scheduler.add_job(_run, "date", args=(app, func, args))
        return None
    pool = app.extensions.get("coffre_backup_pool")
    if pool is None:
        # One worker: backups of one instance queue instead of competing for the disk.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coffre-backup")
        app.extensions["coffre_backup_pool"] = pool
    future = pool.submit(_run, app, func, args)
    app.extensions.setdefault("coffre_backup_futures", []).append(future)
    return future


def drain(app: Flask, timeout: float = 60) -> None:
    """Wait for every job submitted so far (tests, and the CLI before it exits)."""
    for future in list(app.extensions.get("coffre_backup_futures", [])):
        future.result(timeout=timeout)
    app.extensions["coffre_backup_futures"] = []
