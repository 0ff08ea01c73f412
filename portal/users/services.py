"""Managing an organisation's members: invitations, roles, deactivation. No Flask request here."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, func, or_, select, update

from portal.api.services import revoke_user_tokens
from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth import clock
from portal.auth.models import AccountToken, User
from portal.auth.services import EmailTakenError, consume_token, find_user_by_email, issue_token, normalise_email
from portal.auth.sessions import revoke_sessions
from portal.extensions import db
from portal.security import sealed
from portal.security.passwords import hash_password
from portal.security.permissions import Role
from portal.security.tenancy import scoped

INVITATION_SEAL = "invitation-link"


class LastAdminError(Exception):
    """The action would leave the organisation without an active administrator."""


def members_query(organization_id: int, search: str | None = None):
    statement = scoped(User, organization_id)
    if search:
        pattern = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            or_(func.lower(User.name).like(pattern, escape="\\"), func.lower(User.email).like(pattern, escape="\\"))
        )
    return statement.order_by(User.active.desc(), func.lower(User.name), User.id)


def _other_active_admins(user: User) -> int:
    # Lock every active admin row of the organisation, in id order, so two concurrent
    # demotions queue (PostgreSQL re-checks the WHERE after the wait) instead of both
    # passing or deadlocking; SQLite's BEGIN IMMEDIATE already serialises writers.
    ids = db.session.execute(
        select(User.id)
        .where(
            User.organization_id == user.organization_id,
            User.role == Role.ADMIN.value,
            User.active.is_(True),
        )
        .order_by(User.id)
        .with_for_update()
    ).scalars()
    return sum(1 for admin_id in ids if admin_id != user.id)


def _issue_invitation(user: User) -> str:
    token = issue_token(user, "invitation")
    db.session.execute(
        update(AccountToken)
        .where(AccountToken.token_hash == hashlib.sha256(token.encode()).hexdigest())
        .values(token_sealed=sealed.seal(token, label=INVITATION_SEAL, bound_to=f"user:{user.id}"))
    )
    return token


def pending_invitation_tokens(organization_id: int, user_ids: list[int]) -> dict[int, str]:
    """The live invitation token of each listed member of ``organization_id`` who has one."""
    if not user_ids:
        return {}
    rows = db.session.execute(
        select(AccountToken.user_id, AccountToken.token_sealed)
        .join(User, User.id == AccountToken.user_id)
        .where(
            User.organization_id == organization_id,
            User.id.in_(user_ids),
            User.password_hash.is_(None),
            AccountToken.purpose == "invitation",
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > clock.now(),
            AccountToken.token_sealed.is_not(None),
        )
        .order_by(AccountToken.id)
    ).all()
    return {user_id: sealed.unseal(value, label=INVITATION_SEAL, bound_to=f"user:{user_id}") for user_id, value in rows}


def invite(organization_id: int, email: str, name: str, role: str, actor: Actor) -> tuple[User, str]:
    email = normalise_email(email)
    if find_user_by_email(email) is not None:
        raise EmailTakenError(email)
    from portal.billing.services import check_member_quota

    check_member_quota(organization_id)  # raises MemberQuotaError
    user = User(
        organization_id=organization_id,
        email=email,
        name=name.strip(),
        role=Role(role).value,
        password_hash=None,
    )
    db.session.add(user)
    db.session.flush()
    token = _issue_invitation(user)
    record(
        "user.invited",
        actor,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"role": user.role},
    )
    return user, token


def reinvite(user: User, actor: Actor) -> str:
    """A fresh invitation link for a member who never set a password; older links die."""
    if user.password_hash is not None or not user.active:
        raise ValueError("only a pending, active invitation can be sent again")
    db.session.execute(
        update(AccountToken)
        .where(AccountToken.user_id == user.id, AccountToken.purpose == "invitation", AccountToken.used_at.is_(None))
        .values(used_at=clock.now(), token_sealed=None)
    )
    token = _issue_invitation(user)
    record(
        "user.invited",
        actor,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"role": user.role, "resent": True},
    )
    return token


class NotPendingError(Exception):
    """Only an invitation nobody accepted yet can be revoked."""


def revoke_invitation(user: User, actor: Actor) -> None:
    """Withdraw a pending invitation: the invited row goes, so the address can be invited again.

    A member who never accepted has never acted (no journal entry is theirs, which the
    journal's foreign key would forbid deleting); their links die with the row.
    """
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    db.session.refresh(user)
    if user.password_hash is not None or not user.active:
        raise NotPendingError()
    from portal.sso.models import SsoIdentity

    if db.session.execute(select(SsoIdentity.id).where(SsoIdentity.user_id == user.id)).first() is not None:
        raise NotPendingError()  # signed in through SSO: a member, not an invitation
    record(
        "user.invitation_revoked",
        actor,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"role": user.role},
    )
    db.session.execute(delete(AccountToken).where(AccountToken.user_id == user.id))
    db.session.delete(user)
    db.session.flush()


def accept_invitation(token: str, name: str, password: str, actor: Actor) -> User | None:
    row = consume_token(token, "invitation")
    if row is None or not row.user.active:
        return None
    row.token_sealed = None  # a used link is never shown again
    user = row.user
    user.name = name.strip()
    user.password_hash = hash_password(password)
    user.password_changed_at = clock.now()
    user.email_confirmed_at = clock.now()  # the link reached the mailbox
    record(
        "user.invitation_accepted",
        Actor(user.organization_id, user.id, actor.ip, actor.user_agent),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
    )
    return user


def change_role(user: User, role: str, actor: Actor) -> bool:
    """Returns False when nothing changed. Raises LastAdminError."""
    new_role = Role(role).value
    if new_role == user.role:
        return False
    if user.role == Role.ADMIN.value and user.active and _other_active_admins(user) == 0:
        raise LastAdminError()
    old = user.role
    user.role = new_role
    record(
        "user.role_changed",
        actor,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"from": old, "to": new_role},
    )
    return True


def deactivate(user: User, actor: Actor) -> None:
    if not user.active:
        return
    if user.role == Role.ADMIN.value and _other_active_admins(user) == 0:
        raise LastAdminError()
    user.active = False
    ended = revoke_sessions(user.id)
    # Otherwise a reactivation would bring the member's old tokens back to life.
    revoked = revoke_user_tokens(user.id)
    record(
        "user.deactivated",
        actor,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"sessions_ended": ended, "tokens_revoked": revoked},
    )


def reactivate(user: User, actor: Actor) -> None:
    if user.active:
        return
    user.active = True
    record("user.reactivated", actor, target_type="user", target_id=user.id, target_label=user.email)


def count_active_members(organization_id: int) -> int:
    return db.session.execute(
        select(func.count()).select_from(User).where(User.organization_id == organization_id, User.active.is_(True))
    ).scalar_one()
