from __future__ import annotations

from portal.profile import bp  # noqa: F401
