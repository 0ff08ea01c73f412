"""Pseudonymising a departed member, in the journal and in every row that names them.

The journal's chain keeps verifying: a version-2 entry chains a keyed digest of its label
(``portal.crypto.identity``), so the label is replaced and the server's proof that the
replacement belongs to that digest is stored beside it. A version-1 entry chained the label
itself: its original is sealed (AES-256-GCM under an instance key, bound to the entry) so
that ``journal verify`` can still recompute the hash, and the displayed label becomes the
pseudonym. Either way no readable name or address of the member remains in the database.
The IP addresses and browser strings of the member's own entries are chained as they are
and stay (they identify a network and a device, not a person by name).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update

from portal.api.models import ApiToken
from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.audit.services import LABEL_SEAL, original_label, record
from portal.auth import clock
from portal.auth.models import (
    AccountToken,
    EmailCode,
    LoginThrottle,
    PendingRegistration,
    RecoveryCode,
    User,
    UserSession,
)
from portal.auth.services import account_key
from portal.crypto.identity import identity_digest, pseudonym_proof, pseudonym_tag
from portal.extensions import db
from portal.security import sealed

BATCH = 500


class MemberStillActiveError(Exception):
    """Only a departed (deactivated) member is pseudonymised."""


class AlreadyPseudonymisedError(Exception):
    pass


@dataclass(frozen=True)
class Pseudonym:
    name: str
    email: str


@dataclass(frozen=True)
class PseudonymisationResult:
    pseudonym: Pseudonym
    journal_entries: int


def pseudonym_for(user: User) -> Pseudonym:
    tag = pseudonym_tag(user.organization_id, user.id)
    # ".invalid" is reserved (RFC 2606): the address can never reach anybody.
    return Pseudonym(name=f"Ancien membre {tag}", email=f"ancien-membre-{tag}@pseudonyme.invalid")


def _identities(user: User) -> set[str]:
    from portal.sso.models import SsoIdentity

    names = {user.email.strip().lower(), user.name.strip().lower()}
    names.update(
        (email or "").strip().lower()
        for email in db.session.execute(select(SsoIdentity.email).where(SsoIdentity.user_id == user.id)).scalars()
    )
    return {name for name in names if name}


def _pseudonymise_entries(user: User, identities: set[str], pseudonym: str) -> int:
    """Replace every journal label of the organisation that names the member."""
    names_member = or_(
        (AuditEntry.target_type == "user") & (AuditEntry.target_id == user.id),
        func.lower(AuditEntry.target_label).in_(sorted(identities)),
    )
    done = 0
    after = 0
    while True:
        entries = list(
            db.session.execute(
                select(AuditEntry)
                .where(
                    AuditEntry.organization_id == user.organization_id,
                    AuditEntry.id > after,
                    AuditEntry.target_label.is_not(None),
                    AuditEntry.label_proof.is_(None),
                    names_member,
                )
                .order_by(AuditEntry.id)
                .limit(BATCH)
                .with_for_update()
            ).scalars()
        )
        for entry in entries:
            if entry.hash_version >= 2:
                assert entry.label_digest is not None
                entry.label_proof = pseudonym_proof(entry.id, entry.label_digest, pseudonym)
            else:
                original = original_label(entry)
                assert original is not None
                entry.label_sealed = sealed.seal(original, label=LABEL_SEAL, bound_to=f"journal:{entry.id}")
                entry.label_proof = pseudonym_proof(entry.id, identity_digest(original), pseudonym)
            entry.target_label = pseudonym
        db.session.flush()
        done += len(entries)
        if len(entries) < BATCH:
            return done
        after = entries[-1].id
        # The rows are written: nothing more of them is needed in memory.
        for entry in entries:
            db.session.expunge(entry)


def pseudonymise(user: User, actor: Actor) -> PseudonymisationResult:
    """Replace a departed member's identity everywhere (flushed, not committed)."""
    from portal.sso.models import SsoIdentity

    # Locked first: two admins pseudonymising at once queue, the second sees it done.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    db.session.refresh(user)
    if user.pseudonymised_at is not None:
        raise AlreadyPseudonymisedError()
    if user.active:
        raise MemberStillActiveError()
    pseudonym = pseudonym_for(user)
    identities = _identities(user)
    old_email = user.email
    entries = _pseudonymise_entries(user, identities, pseudonym.name)
    user_id = user.id

    # Invitations, reset links, e-mailed codes and recovery codes: secrets tied to the member.
    for model in (AccountToken, EmailCode, RecoveryCode, SsoIdentity):
        db.session.execute(delete(model).where(model.user_id == user_id))
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.account_key == account_key(old_email)))
    db.session.execute(delete(PendingRegistration).where(func.lower(PendingRegistration.email) == old_email.lower()))
    now = clock.now()
    db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id)
        .values(ip=None, user_agent=None, revoked_at=func.coalesce(UserSession.revoked_at, now))
    )
    # Token names are free text ("portable de Koffi"): replaced by their public prefix.
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id)
        .values(name="jeton " + ApiToken.prefix, revoked_at=func.coalesce(ApiToken.revoked_at, now))
        .execution_options(synchronize_session=False)
    )
    user.name = pseudonym.name
    user.email = pseudonym.email
    user.password_hash = None
    user.locale = None
    user.totp_secret_encrypted = None
    user.totp_pending_encrypted = None
    user.two_factor_method = None
    user.pseudonymised_at = now
    record(
        "user.pseudonymised",
        actor,
        target_type="user",
        target_id=user_id,
        target_label=pseudonym.name,
        details={"journal_entries": entries},
    )
    return PseudonymisationResult(pseudonym=pseudonym, journal_entries=entries)
