"""``GET /api/v1/dashboard/global`` and ``/api/v1/dashboard/utilisateur/<id>``: the dashboards' figures as JSON."""

from __future__ import annotations

from flask import Response, jsonify, request
from flask_login import current_user

from portal.api import bp
from portal.api.problems import validation_problem
from portal.dashboard import services
from portal.dashboard.routes import member_or_refuse
from portal.security.permissions import Permission, requires


def _period() -> int:
    try:
        return services.parse_period(request.args.get("periode"))
    except services.InvalidPeriodError as error:
        raise validation_problem([{"field": "periode", "message": str(error)}]) from None


@bp.get("/dashboard/global")
@requires(Permission.AUDIT_READ)
def dashboard_global() -> Response:
    figures = services.global_figures(current_user.organization_id, _period())
    return jsonify(figures.as_json())


@bp.get("/dashboard/utilisateur/<int:user_id>")
@requires(Permission.ACCOUNT)
def dashboard_member(user_id: int) -> Response:
    member = member_or_refuse(user_id)
    figures = services.member_figures(member.organization_id, member.id, _period())
    return jsonify(figures.as_json())
