"""Thin views: the organisation's dashboard, one member's activity, the platform view."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.auth.models import User
from portal.dashboard import bp, charts, services
from portal.dashboard.formatting import number, percent, size
from portal.security.permissions import Permission, has_permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.web.errors import render_error
from portal.web.htmx import render_page_or_fragment


def member_or_refuse(user_id: int) -> User:
    """The member whose activity is asked for: another organisation's is a 404, another
    member's without the journal permission a logged 403 (oneself is always allowed)."""
    member = get_scoped_or_404(User, user_id)
    if member.id != current_user.id and not has_permission(current_user, Permission.AUDIT_READ):
        from portal.audit.services import record_security_event

        record_security_event("security.forbidden", details={"permission": str(Permission.AUDIT_READ)})
        abort(403)
    return member


def _helpers() -> dict[str, Any]:
    return {"number": number, "size": size, "percent": percent, "periods": services.PERIODS}


@bp.route("/dashboard")
@requires(Permission.AUDIT_READ)
def index():
    return redirect(url_for("dashboard.global_view"))


@bp.route("/dashboard/global")
@requires(Permission.AUDIT_READ)
def global_view():
    try:
        period = services.parse_period(request.args.get("periode"))
    except services.InvalidPeriodError as error:
        return render_error(422, str(error))
    figures = services.global_figures(current_user.organization_id, period)
    return render_page_or_fragment(
        "dashboard/global.html",
        "dashboard/_global.html",
        figures=figures,
        period=period,
        chart=charts.activity_chart(figures, period),
        **_helpers(),
    )


@bp.route("/dashboard/utilisateur/<int:user_id>")
@requires(Permission.ACCOUNT)
def member_view(user_id: int):
    member = member_or_refuse(user_id)
    try:
        period = services.parse_period(request.args.get("periode"))
    except services.InvalidPeriodError as error:
        return render_error(422, str(error))
    figures = services.member_figures(member.organization_id, member.id, period)
    return render_page_or_fragment(
        "dashboard/member.html",
        "dashboard/_member.html",
        member=member,
        figures=figures,
        period=period,
        chart=charts.member_chart(figures, period),
        action_label=_action_label,
        title=_l("Activité de %(name)s", name=member.name),
        **_helpers(),
    )


def _action_label(code: str) -> str:
    from portal.audit.rendering import action_label

    return str(action_label(code))


@bp.route("/dashboard/plateforme")
@requires(Permission.PLATFORM_ADMIN)
def platform_view():
    rows = services.platform_rows()
    return render_page_or_fragment("dashboard/platform.html", "dashboard/_platform.html", rows=rows, **_helpers())
