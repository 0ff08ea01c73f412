"""How long a refused (429) request must wait: one number for the header and the sentence.

Flask-Limiter would otherwise rewrite ``Retry-After`` after the view (to its own window's
reset), so the header and the message could disagree; its header is renamed in
``portal.extensions`` and every 429 goes through here.
"""

from __future__ import annotations

import math
import time

from flask_babel import ngettext
from werkzeug.exceptions import HTTPException


def rounded(seconds: float) -> int:
    """Whole seconds, or whole minutes from two minutes on (a wait is never shortened)."""
    seconds = max(1, math.ceil(seconds))
    return seconds if seconds < 120 else math.ceil(seconds / 60) * 60


def wait_text(seconds: int) -> str:
    if seconds < 120:
        return ngettext(
            "Trop de tentatives. Réessayez dans %(num)d seconde.",
            "Trop de tentatives. Réessayez dans %(num)d secondes.",
            seconds,
        )
    return ngettext(
        "Trop de tentatives. Réessayez dans %(num)d minute.",
        "Trop de tentatives. Réessayez dans %(num)d minutes.",
        seconds // 60,
    )


def wait_of(exc: HTTPException) -> int:
    """The rounded wait of a 429: ours carry ``retry_after``, the limiter's its window."""
    seconds = getattr(exc, "retry_after", None)
    if not seconds:
        from flask_limiter import RateLimitExceeded

        from portal.extensions import limiter

        current = limiter.current_limit if isinstance(exc, RateLimitExceeded) else None
        seconds = current.reset_at - time.time() if current is not None else 60
    return rounded(seconds)
