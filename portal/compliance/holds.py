"""Legal holds: placed on a file, folder or armoire with a reason and a case reference."""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.compliance.errors import ReasonRequired
from portal.compliance.models import LegalHold
from portal.database import utcnow
from portal.documents.errors import NotFound
from portal.extensions import db


def place_hold(actor: Actor, target_type: str, target, *, reason: str, reference: str) -> LegalHold:
    """Hold ``target`` (a trashed file too): nothing it covers may be deleted until lifted."""
    assert actor.organization_id is not None
    if not reason.strip() or not reference.strip():
        raise ReasonRequired(_("Le motif et la référence sont obligatoires."))
    hold = LegalHold(
        organization_id=actor.organization_id,
        target_type=target_type,
        target_id=target.id,
        reason=reason.strip(),
        reference=reference.strip(),
        placed_by_id=actor.user_id,
    )
    db.session.add(hold)
    db.session.flush()
    record(
        "legal_hold.set",
        actor,
        target_type=target_type,
        target_id=target.id,
        target_label=getattr(target, "name", None),
        details={"hold_id": hold.id, "reason": hold.reason, "reference": hold.reference},
    )
    return hold


def get_hold(organization_id: int, hold_id: int, *, lock: bool = False) -> LegalHold:
    statement = select(LegalHold).where(LegalHold.id == hold_id, LegalHold.organization_id == organization_id)
    if lock:
        statement = statement.with_for_update()
    hold = db.session.execute(statement).scalar_one_or_none()
    if hold is None:
        raise NotFound(_("Ce verrouillage n'existe pas."))
    return hold


def lift_hold(actor: Actor, hold: LegalHold, *, reason: str | None) -> LegalHold:
    """Release a hold (once; lifting a released hold is not found), with a reason, journalled."""
    if hold.released_at is not None:
        raise NotFound(_("Ce verrouillage est déjà levé."))
    if not reason or not reason.strip():
        raise ReasonRequired(_("Un motif est obligatoire pour lever un verrouillage."))
    hold.released_at, hold.released_by_id, hold.release_reason = utcnow(), actor.user_id, reason.strip()
    db.session.flush()
    record(
        "legal_hold.released",
        actor,
        target_type=hold.target_type,
        target_id=hold.target_id,
        details={"hold_id": hold.id, "reference": hold.reference, "reason": hold.release_reason},
    )
    return hold


def active_holds(organization_id: int, chain: list[tuple[str, int]] | None = None) -> list[LegalHold]:
    """Active holds of the organisation, or only those on ``chain`` (a file and what holds it)."""
    statement = select(LegalHold).where(LegalHold.organization_id == organization_id, LegalHold.released_at.is_(None))
    holds = list(db.session.execute(statement.order_by(LegalHold.id)).scalars())
    if chain is None:
        return holds
    wanted = set(chain)
    return [hold for hold in holds if (hold.target_type, hold.target_id) in wanted]
