"""The time the account rules see; tests inject a movable clock instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import current_app, has_app_context

from portal.database import utcnow


def now() -> datetime:
    clock: Callable[[], datetime] | None = current_app.config.get("COFFRE_CLOCK") if has_app_context() else None
    return clock() if clock else utcnow()
