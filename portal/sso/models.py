from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.auth.models import User
from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.security.permissions import Role
from portal.security.tenancy import OrgOwned


class SsoIdentity(OrgOwned, db.Model):
    """An identity at a provider, keyed on (issuer, sub): never on the e-mail, which
    two providers can both claim."""

    __tablename__ = "identites_sso"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    user: Mapped[User] = relationship(lazy="joined")


class SsoPolicy(OrgOwned, db.Model):
    """An organisation's SSO rules; no row means SSO sign-in to existing links only."""

    __tablename__ = "politiques_sso"
    __table_args__ = (UniqueConstraint("organization_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Space-separated lists: small, read whole, never queried by element.
    allowed_providers: Mapped[str] = mapped_column(Text, default="")
    allowed_domains: Mapped[str] = mapped_column(Text, default="")
    jit_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    default_role: Mapped[str] = mapped_column(String(20), default=Role.READER.value)
    sso_required: Mapped[bool] = mapped_column(Boolean, default=False)
    trust_provider_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def providers(self) -> set[str]:
        return set(self.allowed_providers.split())

    @property
    def domains(self) -> set[str]:
        return set(self.allowed_domains.split())
