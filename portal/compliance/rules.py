"""Retention rules: where they apply (armoire → folder → file), when they expire, how they change.

A child may only lengthen what it inherits; a conformite rule is only ever extended.
Expiry is computed from server time (``utcnow``) and the stored dates, never a client's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.audit.context import Actor
from portal.audit.services import record
from portal.compliance.errors import BypassNotGranted, ReasonRequired, RuleConflict
from portal.compliance.models import MODES, STARTS, TARGET_TYPES, DispositionDecision, FileEventDate, RetentionRule
from portal.database import utcnow
from portal.documents.errors import NotFound
from portal.documents.models import Armoire, File, Folder
from portal.extensions import db
from portal.security.tenancy import get_scoped

MODELS = {"armoire": Armoire, "folder": Folder, "file": File}
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


def get_target(organization_id: int, target_type: str, target_id: int):
    """The organisation's armoire, folder or file (another organisation's is not found)."""
    model = MODELS.get(target_type)
    target = get_scoped(model, target_id, organization_id) if model is not None else None
    if target is None or (target_type == "file" and target.purged_at is not None):
        raise NotFound(_("Cet élément n'existe pas ou n'est pas accessible depuis votre organisation."))
    return target


def ancestors(target_type: str, target) -> list[tuple[str, int]]:
    """(type, id) of what ``target`` inherits from, nearest first, itself excluded."""
    chain: list[tuple[str, int]] = []
    folder_id = target.folder_id if target_type == "file" else (target.parent_id if target_type == "folder" else None)
    seen: set[int] = set()
    while folder_id is not None and folder_id not in seen:
        seen.add(folder_id)
        chain.append(("folder", folder_id))
        folder_id = db.session.execute(select(Folder.parent_id).where(Folder.id == folder_id)).scalar_one_or_none()
    if target_type != "armoire":
        chain.append(("armoire", target.armoire_id))
    return chain


def lineage(target_type: str, target) -> list[tuple[str, int]]:
    """The target itself, then its ancestors."""
    return [(target_type, target.id), *ancestors(target_type, target)]


def rule_on(organization_id: int, target_type: str, target_id: int, *, lock: bool = False) -> RetentionRule | None:
    statement = select(RetentionRule).where(
        RetentionRule.organization_id == organization_id,
        RetentionRule.target_type == target_type,
        RetentionRule.target_id == target_id,
    )
    if lock:
        statement = statement.with_for_update()
    return db.session.execute(statement).scalar_one_or_none()


def rules_for(organization_id: int, chain: list[tuple[str, int]]) -> list[RetentionRule]:
    """The rules on ``chain``, in its order (nearest first)."""
    rules = [rule_on(organization_id, kind, ident) for kind, ident in chain]
    return [rule for rule in rules if rule is not None]


def event_date(file_id: int) -> date | None:
    return db.session.execute(select(FileEventDate.event_date).where(FileEventDate.file_id == file_id)).scalar()


def keep_until(file_id: int) -> datetime | None:
    """The latest "keep longer" a disposition review decided for the file."""
    rows = db.session.execute(
        select(DispositionDecision.keep_until).where(
            DispositionDecision.file_id == file_id, DispositionDecision.decision == "keep"
        )
    ).scalars()
    values = [value for value in rows if value is not None]
    return max(values) if values else None


def expiry(rule: RetentionRule, file: File) -> datetime | None:
    """When ``rule`` stops protecting ``file``; None while its event date is not set (kept)."""
    if rule.counted_from == "upload":
        start = file.created_at
    elif rule.counted_from == "last_version":
        version = file.current_version
        start = version.created_at if version is not None else file.updated_at
    else:
        day = event_date(file.id)
        if day is None:
            return None
        start = datetime.combine(day, time.min, tzinfo=UTC)
    try:
        return start + timedelta(days=rule.duration_days)
    except OverflowError:
        # An event date near year 9999: kept until the end of representable time.
        return FAR_FUTURE


@dataclass
class FileRetention:
    """Every rule covering a file with its expiry, and the file's overall end of retention."""

    rules: list[tuple[RetentionRule, datetime | None]]
    kept_until: datetime | None

    def active(self, now: datetime) -> list[tuple[RetentionRule, datetime | None]]:
        """Unexpired rules, conformite first, then the latest expiry first."""
        live = [(rule, end) for rule, end in self.rules if end is None or end > now]
        return sorted(
            live,
            key=lambda pair: (pair[0].mode != "conformite", -(pair[1] or datetime.max.replace(tzinfo=UTC)).timestamp()),
        )

    def expires_at(self) -> datetime | None:
        """The latest expiry of the rules (None: no rule, or an event not yet set)."""
        if not self.rules:
            return None
        ends = [end for _rule, end in self.rules]
        if any(end is None for end in ends):
            return None
        latest = max(ends)  # type: ignore[type-var]
        if self.kept_until is not None and self.kept_until > latest:
            latest = self.kept_until
        return latest


def file_retention(file: File) -> FileRetention:
    rules = rules_for(file.organization_id, lineage("file", file))
    return FileRetention([(rule, expiry(rule, file)) for rule in rules], keep_until(file.id))


def rule_in_force(
    organization_id: int, target_type: str, target
) -> tuple[RetentionRule | None, tuple[str, int] | None]:
    """The nearest rule (its own or inherited) and, when inherited, where from."""
    for kind, ident in lineage(target_type, target):
        rule = rule_on(organization_id, kind, ident)
        if rule is not None:
            inherited = None if (kind, ident) == (target_type, target.id) else (kind, ident)
            return rule, inherited
    return None, None


def _validate(duration_days: int, mode: str, counted_from: str) -> None:
    if duration_days < 1 or mode not in MODES or counted_from not in STARTS:
        raise RuleConflict(_("Règle de conservation invalide."))


def set_rule(
    actor: Actor, target_type: str, target, *, duration_days: int, mode: str, counted_from: str
) -> RetentionRule:
    """Create the rule of a target; a child may only lengthen (and never weaken) what it inherits."""
    assert target_type in TARGET_TYPES and actor.organization_id is not None
    _validate(duration_days, mode, counted_from)
    if rule_on(actor.organization_id, target_type, target.id, lock=True) is not None:
        raise RuleConflict(_("Cet élément a déjà une règle de conservation : modifiez-la."))
    for inherited in rules_for(actor.organization_id, ancestors(target_type, target)):
        if duration_days < inherited.duration_days:
            raise RuleConflict(
                _(
                    "Une règle héritée impose déjà %(days)d jours : un élément contenu ne peut que l'allonger.",
                    days=inherited.duration_days,
                )
            )
        if inherited.mode == "conformite" and mode != "conformite":
            raise RuleConflict(
                _("Une règle héritée est en mode conformité : un élément contenu ne peut pas l'affaiblir.")
            )
    rule = RetentionRule(
        organization_id=actor.organization_id,
        target_type=target_type,
        target_id=target.id,
        duration_days=duration_days,
        mode=mode,
        counted_from=counted_from,
        created_by_id=actor.user_id,
    )
    try:
        with db.session.begin_nested():
            db.session.add(rule)
    except IntegrityError:
        # A concurrent request created the target's rule first (the unique constraint decides).
        raise RuleConflict(_("Cet élément a déjà une règle de conservation : modifiez-la.")) from None
    record(
        "retention.changed",
        actor,
        target_type=target_type,
        target_id=target.id,
        target_label=getattr(target, "name", None),
        details={"op": "set", "rule_id": rule.id, "duration_days": duration_days, "mode": mode, "from": counted_from},
    )
    return rule


def get_rule(organization_id: int, rule_id: int, *, lock: bool = False) -> RetentionRule:
    statement = select(RetentionRule).where(
        RetentionRule.id == rule_id, RetentionRule.organization_id == organization_id
    )
    if lock:
        statement = statement.with_for_update()
    rule = db.session.execute(statement).scalar_one_or_none()
    if rule is None:
        raise NotFound(_("Cette règle de conservation n'existe pas."))
    return rule


def _require_bypass(actor: Actor, reason: str | None) -> str:
    from portal.compliance.grants import has_bypass

    if not has_bypass(actor.organization_id, actor.user_id):
        raise BypassNotGranted(_("Il faut la permission « contourner la conservation » pour raccourcir une règle."))
    if not reason or not reason.strip():
        raise ReasonRequired(_("Un motif est obligatoire pour contourner la conservation."))
    return reason.strip()


def change_rule(
    actor: Actor, rule: RetentionRule, *, duration_days: int | None, mode: str | None = None, reason: str | None = None
) -> RetentionRule:
    """Lengthen a rule (always allowed); shorten or weaken it only in gouvernance, with the bypass and a reason."""
    new_days = rule.duration_days if duration_days is None else duration_days
    new_mode = rule.mode if mode is None else mode
    _validate(new_days, new_mode, rule.counted_from)
    weaker = new_days < rule.duration_days or (rule.mode == "conformite" and new_mode != "conformite")
    bypass_reason = None
    if weaker:
        if rule.mode == "conformite":
            raise RuleConflict(
                _("Une règle en mode conformité ne peut être ni raccourcie ni assouplie avant son terme.")
            )
        if reason is None:
            raise RuleConflict(_("Une règle ne peut qu'être allongée (sauf contournement motivé en mode gouvernance)."))
        bypass_reason = _require_bypass(actor, reason)
    target = get_target(rule.organization_id, rule.target_type, rule.target_id)
    for inherited in rules_for(rule.organization_id, ancestors(rule.target_type, target)):
        if new_days < inherited.duration_days and bypass_reason is None:
            raise RuleConflict(_("Une règle héritée impose une durée plus longue."))
    old = {"duration_days": rule.duration_days, "mode": rule.mode}
    rule.duration_days, rule.mode, rule.updated_at = new_days, new_mode, utcnow()
    db.session.flush()
    details = {"op": "change", "rule_id": rule.id, "from": old, "to": {"duration_days": new_days, "mode": new_mode}}
    if bypass_reason is not None:
        details["bypass_reason"] = bypass_reason
    record(
        "retention.changed",
        actor,
        target_type=rule.target_type,
        target_id=rule.target_id,
        target_label=getattr(target, "name", None),
        details=details,
    )
    return rule


def delete_rule(actor: Actor, rule: RetentionRule, *, reason: str | None = None) -> None:
    """Remove a rule: never in conformite; in gouvernance with the bypass and a reason."""
    if rule.mode == "conformite":
        raise RuleConflict(_("Une règle en mode conformité ne peut pas être supprimée."))
    bypass_reason = _require_bypass(actor, reason)
    record(
        "retention.changed",
        actor,
        target_type=rule.target_type,
        target_id=rule.target_id,
        details={
            "op": "delete",
            "rule_id": rule.id,
            "duration_days": rule.duration_days,
            "bypass_reason": bypass_reason,
        },
    )
    db.session.delete(rule)
    db.session.flush()


def set_event_date(actor: Actor, file: File, day: date) -> FileEventDate:
    """Set the event a "from event" retention counts from.

    Moving it earlier shortens a retention: refused when that would shorten a conformite
    rule, and only with the bypass (and a reason) otherwise — here simply refused, like
    any shortening through a setting.
    """
    row = db.session.execute(
        select(FileEventDate).where(FileEventDate.file_id == file.id).with_for_update()
    ).scalar_one_or_none()
    if row is not None and day < row.event_date:
        now = utcnow()
        for rule, end in file_retention(file).rules:
            if rule.counted_from == "event" and (end is None or end > now):
                raise RuleConflict(_("Avancer la date d'événement raccourcirait une conservation en cours."))
    old = row.event_date.isoformat() if row is not None else None
    if row is None:
        row = FileEventDate(organization_id=file.organization_id, file_id=file.id, event_date=day)
        db.session.add(row)
    row.event_date, row.set_at = day, utcnow()
    db.session.flush()
    record(
        "file.event_date_set",
        actor,
        target_type="file",
        target_id=file.id,
        target_label=file.name,
        details={"date": day.isoformat(), "previous": old},
    )
    return row
