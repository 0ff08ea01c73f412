# ruff: noqa: N818  -- named like the documents errors they extend
"""Typed errors of the compliance services; a refused deletion is a 423 everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.documents.errors import DocumentError, Locked

RETENTION = "/problems/retention"
LEGAL_HOLD = "/problems/legal-hold"


class DeletionRefused(Locked):
    """A deletion the retention rules or a legal hold forbid; nothing was changed.

    Carries what the 423 problem document and the ``file.deletion_refused`` entry need.
    """

    def __init__(
        self,
        message: str,
        *,
        type_: str,
        file_id: int | None,
        file_name: str | None,
        organization_id: int,
        action: str,
        rule_id: int | None = None,
        hold_id: int | None = None,
        reference: str | None = None,
        expires_at: datetime | None = None,
        mode: str | None = None,
        overridable: bool = False,
    ) -> None:
        super().__init__(message)
        # Only gouvernance rules stand in the way: a member holding the bypass grant may
        # delete anyway, with a reason (compliance.policy.assert_may_delete).
        self.overridable = overridable
        self.type = type_
        self.file_id = file_id
        self.file_name = file_name
        self.organization_id = organization_id
        self.action = action
        self.rule_id = rule_id
        self.hold_id = hold_id
        self.reference = reference
        self.expires_at = expires_at
        self.mode = mode

    def problem_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.rule_id is not None:
            fields["rule_id"] = self.rule_id
            fields["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        if self.hold_id is not None:
            fields["hold_id"] = self.hold_id
            fields["reference"] = self.reference
        return fields


class ComplianceError(DocumentError):
    """Base of the other compliance refusals (``status`` set by each)."""


class RuleConflict(ComplianceError):
    """Shortening, a mode change away from conformite, removing a conformite rule, a duplicate."""

    status = 409


class ReasonRequired(ComplianceError):
    status = 422


class BypassNotGranted(ComplianceError):
    status = 403


class NotExpired(ComplianceError):
    status = 409
