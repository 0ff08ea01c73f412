"""Changing an organisation's settings. No Flask request here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.audit.context import Actor
from portal.audit.services import record
from portal.extensions import db
from portal.organizations.models import Organization

SETTINGS = ("name", "require_2fa", "session_idle_minutes", "session_absolute_hours", "default_locale")


@dataclass(frozen=True)
class Settings:
    name: str
    require_2fa: bool
    session_idle_minutes: int | None
    session_absolute_hours: int | None
    default_locale: str | None


def update_settings(org: Organization, settings: Settings, actor: Actor) -> dict[str, Any]:
    """Apply the settings; journals what changed, as {setting: [before, after]} (flushed)."""
    changes: dict[str, Any] = {}
    for name in SETTINGS:
        before, after = getattr(org, name), getattr(settings, name)
        if before != after:
            changes[name] = [before, after]
            setattr(org, name, after)
    if changes:
        db.session.flush()
        record(
            "organization.settings_changed",
            actor,
            target_type="organization",
            target_id=org.id,
            target_label=org.name,
            details=changes,
        )
    return changes
