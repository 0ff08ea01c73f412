"""RFC 9457 problem documents for the API, with one stable ``type`` per kind of error.

A client branches on ``type`` (never on ``title`` or ``detail``, which are translated).
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.web.errors import ERROR_TEXTS, PROBLEM_TYPES, problem_response

# status -> stable type, for errors raised as plain HTTP exceptions (abort, limiter, Werkzeug).
STATUS_TYPES = PROBLEM_TYPES
# Kinds more precise than their status.
TWO_FACTOR_REQUIRED = "/problems/two-factor-required"
TWO_FACTOR_ENROLMENT_REQUIRED = "/problems/two-factor-enrollment-required"
INVALID_CREDENTIALS = "/problems/invalid-credentials"
SSO_REQUIRED = "/problems/sso-required"
QUOTA_EXCEEDED = "/problems/quota-exceeded"
# A file of that name is already in the folder (on_conflict=refuse); ``existing_file_id`` names it.
NAME_TAKEN = "/problems/name-taken"
SUBSCRIPTION_READ_ONLY = "/problems/subscription-read-only"
# Refused deletions (portal/compliance/errors.py).
RETENTION = "/problems/retention"
LEGAL_HOLD = "/problems/legal-hold"
PROBLEM_TYPES: frozenset[str] = frozenset(
    {
        *STATUS_TYPES.values(),
        TWO_FACTOR_REQUIRED,
        TWO_FACTOR_ENROLMENT_REQUIRED,
        INVALID_CREDENTIALS,
        QUOTA_EXCEEDED,
        NAME_TAKEN,
        SUBSCRIPTION_READ_ONLY,
        RETENTION,
        LEGAL_HOLD,
    }
)


class ApiProblem(Exception):  # noqa: N818 - a problem document, not a programming error
    """An error the API answers with a problem document; the transaction is rolled back."""

    def __init__(
        self,
        status: int,
        detail: str,
        type_: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_ or STATUS_TYPES.get(status, f"/problems/http-{status}")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


def validation_problem(errors: list[dict[str, str]]) -> ApiProblem:
    """422 with an ``errors`` member: one ``{"field", "message"}`` per refused field."""
    return ApiProblem(422, _("Certaines données sont invalides."), errors=errors)


def _title(status: int) -> str:
    title, _detail = ERROR_TEXTS.get(status, ERROR_TEXTS[500])
    return str(title)


def render_problem(problem: ApiProblem) -> Response:
    extra: dict[str, Any] = dict(problem.extra)
    if problem.errors is not None:
        extra["errors"] = problem.errors
    response = problem_response(problem.status, _title(problem.status), problem.detail, problem.type, **extra)
    response.headers.update(problem.headers)
    return response


def handle_api_problem(problem: ApiProblem) -> Response:
    db.session.rollback()
    return render_problem(problem)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    db.session.rollback()
    _title_text, default_detail = ERROR_TEXTS.get(status, ERROR_TEXTS[500])
    detail = getattr(exc, "coffre_detail", None) or str(default_detail)
    wait = None
    if status == 429:
        from portal.web.retry import wait_of, wait_text

        wait = wait_of(exc)
        detail = wait_text(wait)
    response = problem_response(status, _title(status), detail, STATUS_TYPES.get(status, f"/problems/http-{status}"))
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    if wait is not None:
        response.headers["Retry-After"] = str(wait)
    return response
