"""/recherche: the organisation-wide search page (the header's search box leads here)."""

from __future__ import annotations

from flask import request
from flask_babel import format_decimal
from flask_login import current_user

from portal.search import bp, services
from portal.security.permissions import Permission, requires
from portal.web.htmx import render_page_or_fragment


def criteria_from(args) -> services.Criteria:
    return services.Criteria(
        query=args.get("q", ""),
        path=args.get("dossier", ""),
        author=args.get("auteur", ""),
        kind=args.get("type", ""),
        since=services.parse_date(args.get("du")),
        until=services.parse_date(args.get("au")),
        sort=args.get("tri", "name") if args.get("tri", "name") in services.SORTS else "name",
    )


@bp.route("/recherche")
@requires(Permission.DOCUMENT_READ)
def search():
    criteria = criteria_from(request.args)
    results = None
    if not criteria.is_empty:
        results = services.search_files(current_user.organization_id, criteria, request.args.get("page", 1))
    return render_page_or_fragment(
        "search/search.html",
        "search/_results.html",
        criteria=criteria,
        results=results,
        types=services.TYPES,
        sort=criteria.sort,
        count_cap=format_decimal(services.COUNT_CAP),
    )
