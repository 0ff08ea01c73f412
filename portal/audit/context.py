"""Who is acting, passed explicitly to services so they never read Flask globals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    organization_id: int | None
    user_id: int | None
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def system(cls, organization_id: int | None) -> Actor:
        """A scheduled job or CLI command acting without a user."""
        return cls(organization_id=organization_id, user_id=None, ip=None, user_agent="system")
