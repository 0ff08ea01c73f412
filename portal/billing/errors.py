"""The error every refused billing action raises (its views answer ``status`` with the message)."""

from __future__ import annotations


class BillingError(Exception):
    """A refused billing action; ``field`` names the offending input (422 unless ``status`` says otherwise)."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
