from __future__ import annotations

from portal.api import bp, tokens_bp  # noqa: F401
