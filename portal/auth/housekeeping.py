"""Removal of the bookkeeping rows that only matter for a while.

Sessions, e-mail codes, link tokens, login throttles, pending registrations and the
preview de-duplication rows are written on every sign-in or preview and are worthless once
they have expired; without this they would grow forever. Nothing here is a document or a
journal entry: the journal keeps the record of every sign-in, code and invitation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_

from portal.audit.models import RecentView
from portal.auth.models import AccountToken, EmailCode, LoginThrottle, PendingRegistration, UserSession
from portal.database import utcnow
from portal.extensions import db

# A session row outlives its expiry by this much, so that a stale cookie still meets its row
# and its owner is told "your session has expired" rather than treated as a stranger.
SESSION_GRACE = timedelta(days=7)
# A sign-in that succeeded from a client exempts it from the account-wide ceiling this long.
THROTTLE_SUCCESS_MEMORY = timedelta(days=30)
SPENT_TOKEN_KEPT = timedelta(days=30)
SHORT_LIVED_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class Swept:
    sessions: int
    email_codes: int
    account_tokens: int
    login_throttles: int
    registrations: int
    recent_views: int

    @property
    def total(self) -> int:
        return (
            self.sessions
            + self.email_codes
            + self.account_tokens
            + self.login_throttles
            + self.registrations
            + self.recent_views
        )


def _count(statement) -> int:
    return db.session.execute(statement).rowcount or 0


def sweep(now: datetime | None = None) -> Swept:
    """Delete what has expired (the caller commits)."""
    now = now or utcnow()
    # Organisations may only shorten the instance's absolute session length, never lengthen it.
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"])
    session_cutoff = now - absolute - SESSION_GRACE
    return Swept(
        sessions=_count(
            delete(UserSession).where(
                or_(UserSession.revoked_at < now - SESSION_GRACE, UserSession.auth_at < session_cutoff)
            )
        ),
        email_codes=_count(delete(EmailCode).where(EmailCode.expires_at < now - SHORT_LIVED_KEPT)),
        # Invitations stay: the members page shows an expired one with "resend", and there is
        # at most one per member.
        account_tokens=_count(
            delete(AccountToken).where(
                AccountToken.purpose != "invitation",
                or_(AccountToken.used_at < now - SPENT_TOKEN_KEPT, AccountToken.expires_at < now - SPENT_TOKEN_KEPT),
            )
        ),
        login_throttles=_count(
            delete(LoginThrottle).where(
                LoginThrottle.updated_at < now - SHORT_LIVED_KEPT,
                or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
                or_(LoginThrottle.succeeded_at.is_(None), LoginThrottle.succeeded_at < now - THROTTLE_SUCCESS_MEMORY),
            )
        ),
        registrations=_count(
            delete(PendingRegistration).where(PendingRegistration.expires_at < now - SHORT_LIVED_KEPT)
        ),
        recent_views=_count(delete(RecentView).where(RecentView.viewed_at < now - SHORT_LIVED_KEPT)),
    )
