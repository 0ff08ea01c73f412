from __future__ import annotations

from portal.documents import bp  # noqa: F401
