from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, abort, current_app, request, stream_with_context, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.audit import bp, queries, rendering
from portal.audit.actions import ACTIONS
from portal.audit.services import chain_id_for, record
from portal.audit.verification import chain_length, verify_chain
from portal.auth.models import User
from portal.database import utcnow, writes_on_get
from portal.extensions import db, limiter
from portal.security.permissions import Permission, has_permission, requires
from portal.security.tenancy import get_scoped_or_404, scoped
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import render_page_or_fragment

FULL_VERIFY_MAX = 50_000


def _user_link() -> Callable[[int], str] | None:
    if has_permission(current_user, Permission.AUDIT_READ):
        return lambda user_id: url_for("audit.user_activity", user_id=user_id)
    return None


def entry_rows(entries: list[Any], organization_id: int) -> list[dict[str, Any]]:
    """What the templates show for each entry (shared with the dashboard)."""
    names = rendering.user_names(entries, organization_id)
    link = _user_link()
    return [
        {
            "entry": entry,
            "when": rendering.timestamp(entry),
            "sentence": rendering.sentence(entry, names, link),
        }
        for entry in entries
    ]


def activity_context(user: User, before: int | None = None, size: int = queries.PAGE_SIZE) -> dict[str, Any]:
    """Context for ``audit/_activity.html``: one member's latest actions."""
    page = queries.user_activity(user.organization_id, user.id, before, size)
    return {"member": user, "entries_page": page, "rows": entry_rows(page.items, user.organization_id)}


@bp.route("/journal")
@requires(Permission.AUDIT_READ)
def journal():
    organization_id = current_user.organization_id
    journal_filter = queries.parse_filter(request.args)
    before = queries.parse_before(request.args.get("avant"))
    status = 422 if journal_filter.errors else 200
    page = queries.KeysetPage([], None, before)
    if not journal_filter.errors:
        page = queries.journal_page(organization_id, journal_filter, before)
    members = db.session.execute(
        scoped(User, organization_id).with_only_columns(User.id, User.name).order_by(User.name)
    ).all()
    return render_page_or_fragment(
        "audit/journal.html",
        "audit/_journal_results.html",
        status=status,
        entries_page=page,
        rows=entry_rows(page.items, organization_id),
        journal_filter=journal_filter,
        filter_args=journal_filter.query_args(),
        members=members,
        actions=sorted(ACTIONS),
        action_label=rendering.action_label,
        target_types=queries.TARGET_TYPES,
        target_type_label=rendering.target_type_label,
    )


@bp.route("/journal/verification")
@requires(Permission.AUDIT_READ)
@writes_on_get
@limiter.limit("6/minute")  # each check appends a signed line to the shared checkpoint file
def verification():
    organization_id = current_user.organization_id
    chain_id = chain_id_for(organization_id)
    # A full pass over a long journal would hold the request (and, on SQLite, the write
    # lock) for seconds: beyond the limit the page checks from the newest signed
    # checkpoint and the full pass is left to `flask journal verify`.
    limit = current_app.config.get("COFFRE_JOURNAL_FULL_VERIFY_MAX", FULL_VERIFY_MAX)
    result = verify_chain(chain_id, since_checkpoint=chain_length(chain_id) > limit)
    problem = result.problem
    record(
        "journal.verified",
        current_actor(),
        details={
            "ok": result.ok,
            "entries": result.entries_checked,
            "kind": problem.kind if problem else None,
            "seq": problem.seq if problem else None,
            "from_seq": result.from_seq,
        },
    )
    db.session.commit()
    return render_page_or_fragment("audit/verification.html", "audit/_verification.html", result=result)


_EXPORTS: dict[str, tuple[str, Callable[[int, queries.JournalFilter], Iterator[str]]]] = {
    "csv": ("text/csv; charset=utf-8", queries.export_csv),
    "json": ("application/json", queries.export_json),
}


@bp.route("/journal/export.<fmt>")
@requires(Permission.AUDIT_READ)
@writes_on_get
@limiter.limit("10/minute")  # a costly function (ASVS 2.4.1): streams the whole filtered journal
def export(fmt: str):
    if fmt not in _EXPORTS:
        abort(404)
    journal_filter = queries.parse_filter(request.args)
    if journal_filter.errors:
        return render_error(422, " ".join(journal_filter.errors.values()))
    organization_id = current_user.organization_id
    record("journal.exported", current_actor(), details={"format": fmt, "filter": journal_filter.describe()})
    # Committed before the first byte: an export that was served is always in the journal.
    db.session.commit()
    mimetype, producer = _EXPORTS[fmt]

    def generate() -> Iterator[str]:
        if fmt == "csv":
            yield "\ufeff"  # lets spreadsheet software read the UTF-8 accents
        yield from producer(organization_id, journal_filter)

    filename = f"journal-{utcnow():%Y%m%d-%H%M%S}.{fmt}"
    response = Response(stream_with_context(generate()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _activity_response(user: User, title: Any, endpoint: str, **endpoint_args: Any) -> Response:
    context = activity_context(user, queries.parse_before(request.args.get("avant")))
    return render_page_or_fragment(
        "audit/activity.html",
        "audit/_activity.html",
        title=title,
        endpoint=endpoint,
        endpoint_args=endpoint_args,
        **context,
    )


@bp.route("/journal/moi")
@requires(Permission.ACCOUNT)
def my_activity():
    return _activity_response(current_user, _l("Mon activité"), "audit.my_activity")


@bp.route("/journal/utilisateurs/<int:user_id>")
@requires(Permission.AUDIT_READ)
def user_activity(user_id: int):
    member = get_scoped_or_404(User, user_id)
    return _activity_response(
        member, _l("Activité de %(name)s", name=member.name), "audit.user_activity", user_id=member.id
    )
