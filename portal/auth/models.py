from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.database import UTCDateTime, utcnow
from portal.extensions import db
from portal.organizations.models import Organization
from portal.security.permissions import Role
from portal.security.tenancy import OrgOwned


class TwoFactorMethod:
    TOTP = "totp"
    EMAIL = "email"


class User(OrgOwned, UserMixin, db.Model):
    __tablename__ = "utilisateurs"
    __table_args__ = (UniqueConstraint("email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str | None] = mapped_column(String(100), default=None)
    role: Mapped[str] = mapped_column(String(20), default=Role.READER.value)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str | None] = mapped_column(String(5), default=None)
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Two-factor authentication: None, "totp" or "email".
    two_factor_method: Mapped[str | None] = mapped_column(String(10), default=None)
    two_factor_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # AES-256-GCM ciphertexts (portal.security.totp), never the clear secret.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(200), default=None)
    totp_pending_encrypted: Mapped[str | None] = mapped_column(String(200), default=None)
    # Last accepted TOTP time step: a code is accepted only for a strictly later step.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Set when a departed member's identity was replaced by a pseudonym (portal.privacy).
    pseudonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    organization: Mapped[Organization] = relationship(lazy="joined")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def has_two_factor(self) -> bool:
        return self.two_factor_method is not None

    def __repr__(self) -> str:
        return f"<User {self.id}>"


class UserSession(OrgOwned, db.Model):
    """A server-side session: the cookie holds only a random token whose SHA-256 is here.

    A row with ``mfa_pending`` is a login that passed the password and waits for the
    second factor; it authenticates nothing.
    """

    __tablename__ = "sessions_utilisateurs"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    auth_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Last proof of the password or a second factor, for sensitive actions.
    reauth_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    mfa_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    remember: Mapped[bool] = mapped_column(Boolean, default=False)
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)

    user: Mapped[User] = relationship(lazy="joined")


class RecoveryCode(db.Model):
    __tablename__ = "codes_recuperation"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmailCode(db.Model):
    """A 6-digit code sent by e-mail, bound to one login attempt or one session."""

    __tablename__ = "codes_courriel"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    # SHA-256 of the session token the code was asked from.
    binding: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AccountToken(db.Model):
    """Single-use link tokens: e-mail confirmation, password reset, invitation."""

    __tablename__ = "jetons_compte"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Invitations only: the clear token sealed (portal.security.sealed), so the admin who
    # invited can copy the link again when no mail can reach the member. Cleared once used.
    token_sealed: Mapped[str | None] = mapped_column(String(200), default=None)

    user: Mapped[User] = relationship(lazy="joined")


class LoginThrottle(db.Model):
    """Failed sign-ins per (account, client network), and one account-wide row (client "*").

    Keyed by a keyed hash of the typed address, not by user: an address with no account is
    throttled exactly like one with an account, so a delay reveals nothing.
    """

    __tablename__ = "limites_connexion"
    __table_args__ = (UniqueConstraint("account_key", "client"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_key: Mapped[str] = mapped_column(String(64))
    # An IPv4 address, an IPv6 /64 network, or "*" for the account-wide ceiling.
    client: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # A sign-in succeeded from this client: the account-wide ceiling does not hold it back.
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingRegistration(db.Model):
    """A registration waiting for its address to be confirmed: nothing exists before the link."""

    __tablename__ = "inscriptions_en_attente"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    organization_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(100))
    locale: Mapped[str | None] = mapped_column(String(5), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
