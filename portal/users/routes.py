from __future__ import annotations

from portal.users import bp  # noqa: F401
