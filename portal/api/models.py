from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.auth.models import User
from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.tenancy import OrgOwned


class ApiToken(OrgOwned, db.Model):
    """A bearer token for the desktop API.

    Only the SHA-256 of the secret is stored; the token acts as its user, so a role
    change or a deactivation applies to it at once.
    """

    __tablename__ = "jetons_api"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the secret, so a member can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    user: Mapped[User] = relationship(lazy="joined")

    def is_live(self, at: datetime) -> bool:
        return self.revoked_at is None and at < self.expires_at

    def __repr__(self) -> str:
        return f"<ApiToken {self.id}>"
