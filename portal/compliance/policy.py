"""The one deletion policy: every path that deletes, purges or prunes asks ``assert_may_delete``.

``DELETING_PATHS`` names those paths; tests/compliance/test_enforcement.py scans the code for
anything that deletes (shreds keys, sets ``deleted_at``/``purged_at``, deletes a manifest)
and fails on a function that neither is listed here nor asks the policy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_babel import format_datetime
from flask_babel import gettext as _

from portal.audit.context import Actor
from portal.audit.services import record
from portal.compliance.errors import LEGAL_HOLD, RETENTION, BypassNotGranted, DeletionRefused, ReasonRequired
from portal.compliance.holds import active_holds
from portal.compliance.rules import file_retention, lineage, rules_for
from portal.database import utcnow
from portal.documents.models import File

# (module, function) of every code path that deletes a file or something holding one.
DELETING_PATHS: tuple[tuple[str, str], ...] = (
    ("portal.documents.services.trash", "trash_file"),  # web and API delete
    ("portal.documents.services.trash", "purge_file"),  # web purge, disposition, trash emptying
    ("portal.documents.services.trash", "purge_expired_trash"),  # the scheduled retention purge
    ("portal.documents.services.folders", "delete_folder"),
    ("portal.documents.services.armoires", "delete_armoire"),
    ("portal.backups.retention", "prune"),  # backup pruning
    ("portal.compliance.disposition", "destroy"),
)
# Version pruning: the portal keeps every version of a file; no code path prunes one.

ACTIONS = ("trash", "purge", "retention_purge", "backup_prune", "disposition", "container_delete", "move")


def _date(value: datetime | None) -> str:
    # No expiry yet: the rule counts from an event date that is not set.
    return format_datetime(value, "short") if value is not None else _("(date d'événement à fixer)")


def _refusal_for(file: File, action: str, now: datetime) -> tuple[DeletionRefused | None, Any]:
    """The hold or unexpired retention that forbids deleting ``file`` (None when nothing does),
    and the governance rules a bypass could overrule."""
    chain = lineage("file", file)
    holds = active_holds(file.organization_id, chain)
    if holds:
        hold = holds[0]
        return (
            DeletionRefused(
                _(
                    "« %(name)s » est sous verrouillage légal (référence %(reference)s : %(reason)s) : "
                    "il ne peut être ni supprimé ni détruit tant que le verrouillage n'est pas levé.",
                    name=file.name,
                    reference=hold.reference,
                    reason=hold.reason,
                ),
                type_=LEGAL_HOLD,
                file_id=file.id,
                file_name=file.name,
                organization_id=file.organization_id,
                action=action,
                hold_id=hold.id,
                reference=hold.reference,
            ),
            [],
        )
    retention = file_retention(file)
    active = retention.active(now)
    kept = retention.kept_until
    if not active and kept is not None and kept > now and retention.rules:
        # A disposition review decided to keep it longer: the strongest rule keeps protecting it.
        rule = sorted(retention.rules, key=lambda pair: pair[0].mode != "conformite")[0][0]
        active = [(rule, kept)]
    if not active:
        return None, []
    rule, end = active[0]
    mode = _("conformité") if rule.mode == "conformite" else _("gouvernance")
    refusal = DeletionRefused(
        _(
            "« %(name)s » est sous conservation (règle n° %(rule)s, mode %(mode)s), échéance : %(date)s ; "
            "il ne peut pas être supprimé avant.",
            name=file.name,
            rule=rule.id,
            mode=mode,
            date=_date(end),
        ),
        type_=RETENTION,
        file_id=file.id,
        file_name=file.name,
        organization_id=file.organization_id,
        action=action,
        rule_id=rule.id,
        expires_at=end,
        mode=rule.mode,
    )
    governance_only = all(r.mode == "gouvernance" for r, _end in active)
    refusal.overridable = governance_only
    return refusal, active if governance_only else None


def assert_may_delete(
    file: File, actor: Actor, *, action: str, bypass: bool = False, bypass_reason: str | None = None
) -> None:
    """Raise ``DeletionRefused`` (423) when a hold or an unexpired retention forbids the deletion.

    Holds and conformite rules admit no exception (platform administrators included). A
    gouvernance rule yields to ``bypass`` by a member holding the grant, with a reason
    (``ReasonRequired``, 422, without one); the bypass is journalled in the caller's
    transaction. Server time only.
    """
    assert action in ACTIONS
    refusal, overridable = _refusal_for(file, action, utcnow())
    if refusal is None:
        return
    if bypass and overridable:
        from portal.compliance.grants import has_bypass

        if not has_bypass(actor.organization_id, actor.user_id):
            raise BypassNotGranted(_("Vous n'avez pas la permission « contourner la conservation »."))
        if not bypass_reason or not bypass_reason.strip():
            raise ReasonRequired(_("Un motif est obligatoire pour contourner la conservation."))
        record(
            "retention.bypassed",
            actor,
            target_type="file",
            target_id=file.id,
            target_label=file.name,
            details={
                "action": action,
                "rule_ids": [rule.id for rule, _end in overridable],
                "reason": bypass_reason.strip(),
            },
        )
        return
    raise refusal


def may_delete(file: File) -> bool:
    """No hold nor unexpired retention covers ``file`` (for listings and backup pruning)."""
    refusal, _overridable = _refusal_for(file, "backup_prune", utcnow())
    return refusal is None


def assert_container_deletable(actor: Actor, target_type: str, target: Any) -> None:
    """An armoire or folder carrying a hold or a rule is not deleted: the files of the trash
    it covered would silently lose that protection."""
    assert actor.organization_id is not None
    holds = active_holds(actor.organization_id, [(target_type, target.id)])
    if holds:
        hold = holds[0]
        raise DeletionRefused(
            _(
                "« %(name)s » est sous verrouillage légal (référence %(reference)s : %(reason)s) : "
                "il ne peut pas être supprimé.",
                name=target.name,
                reference=hold.reference,
                reason=hold.reason,
            ),
            type_=LEGAL_HOLD,
            file_id=None,
            file_name=target.name,
            organization_id=actor.organization_id,
            action="container_delete",
            hold_id=hold.id,
            reference=hold.reference,
        )
    rules = rules_for(actor.organization_id, [(target_type, target.id)])
    if rules:
        raise DeletionRefused(
            _(
                "« %(name)s » porte une règle de conservation (n° %(rule)s) : il ne peut pas être supprimé.",
                name=target.name,
                rule=rules[0].id,
            ),
            type_=RETENTION,
            file_id=None,
            file_name=target.name,
            organization_id=actor.organization_id,
            action="container_delete",
            rule_id=rules[0].id,
        )


def record_refusal(actor: Actor, refusal: DeletionRefused, extra: dict[str, Any] | None = None) -> None:
    """Journal ``file.deletion_refused`` in the current transaction (the refused action's was
    rolled back: the caller commits this one on its own)."""
    details: dict[str, Any] = {"action": refusal.action, "type": refusal.type, "reason": refusal.message}
    details.update({k: v for k, v in refusal.problem_fields().items() if v is not None})
    details.update(extra or {})
    record(
        "file.deletion_refused",
        actor,
        target_type="file" if refusal.file_id is not None else None,
        target_id=refusal.file_id,
        target_label=refusal.file_name,
        details=details,
    )


def journal_refusal(refusal: DeletionRefused) -> None:
    """For views: after the rollback, commit the refusal's journal entry on its own."""
    from portal.extensions import db
    from portal.web.context import current_actor

    actor = current_actor()
    db.session.rollback()
    record_refusal(actor, refusal)
    db.session.commit()


def journal_document_error(error: Exception) -> None:
    """For the views' error handlers: end the failed action's transaction, then journal what
    must be, each in its own committed transaction: a deletion refused by a hold or a rule,
    or a bypass attempted without the grant (a forbidden action, like the permission
    decorator's)."""
    from portal.extensions import db
    from portal.security.permissions import Permission, record_forbidden

    if isinstance(error, DeletionRefused):
        journal_refusal(error)
        return
    db.session.rollback()
    if isinstance(error, BypassNotGranted):
        record_forbidden(Permission.RETENTION_BYPASS)


def assert_backup_prunable(organization_id: int, file_rows: list[dict[str, Any]]) -> None:
    """Refuse pruning a backup holding a file that a hold or an unexpired retention protects:
    deleting that backup would delete a copy of the file. ``file_rows`` are the backup's files
    as its manifest lists them."""
    from sqlalchemy import select

    from portal.extensions import db

    ids = [row["id"] for row in file_rows if isinstance(row, dict) and "id" in row]
    if not ids:
        return
    files = db.session.execute(
        select(File).where(File.organization_id == organization_id, File.id.in_(ids), File.purged_at.is_(None))
    ).scalars()
    now = utcnow()
    for file in files:
        refusal, _overridable = _refusal_for(file, "backup_prune", now)
        if refusal is not None:
            raise refusal


def covering(target_type: str, target: Any) -> tuple[frozenset[int], frozenset[int]]:
    """Ids of the active holds and of the rules that cover ``target`` where it is now."""
    chain = lineage(target_type, target)
    holds = frozenset(hold.id for hold in active_holds(target.organization_id, chain))
    rules = frozenset(rule.id for rule in rules_for(target.organization_id, chain))
    return holds, rules


def assert_move_keeps_protection(target_type: str, target: Any, before: tuple[frozenset[int], frozenset[int]]) -> None:
    """A move may not take a file or folder out from under a hold or a retention rule: that
    would be a deletion's bypass. Called after the move is flushed; the caller rolls back."""
    holds, rules = covering(target_type, target)
    lost_holds, lost_rules = before[0] - holds, before[1] - rules
    if not lost_holds and not lost_rules:
        return
    organization_id = target.organization_id
    raise DeletionRefused(
        _(
            "« %(name)s » est couvert par un verrouillage légal ou une règle de conservation "
            "qu'un déplacement lui ferait perdre : il ne peut pas être déplacé là.",
            name=target.name,
        ),
        type_=LEGAL_HOLD if lost_holds else RETENTION,
        file_id=target.id if target_type == "file" else None,
        file_name=target.name,
        organization_id=organization_id,
        action="move",
        hold_id=min(lost_holds) if lost_holds else None,
        rule_id=None if lost_holds else min(lost_rules),
    )
