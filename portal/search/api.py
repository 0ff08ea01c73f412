"""GET /api/v1/recherche: the same search for the desktop app."""

from __future__ import annotations

from flask import Response, jsonify, request
from flask_babel import gettext as _
from flask_login import current_user

from portal.api import bp
from portal.api.inputs import Validator
from portal.api.routes import iso
from portal.search import services
from portal.search.routes import criteria_from
from portal.security.permissions import Permission, requires


@bp.get("/recherche")
@requires(Permission.DOCUMENT_READ)
def api_search() -> Response:
    check = Validator(request.args)
    for name in ("q", "dossier", "auteur", "type", "du", "au", "tri"):
        check.string(name, max_length=services.QUERY_MAX)
    page = check.integer("page", maximum=1_000_000) or 1
    per_page = check.integer("per_page", maximum=100) or 25
    for name in ("du", "au"):
        if request.args.get(name) and services.parse_date(request.args[name]) is None:
            check.error(name, _("Une date AAAA-MM-JJ est attendue."))
    if request.args.get("type") and request.args["type"] not in services.TYPES:
        check.error("type", _("Valeurs acceptées : %(values)s.", values=", ".join(services.TYPES)))
    if request.args.get("tri") and request.args["tri"] not in services.SORTS:
        check.error("tri", _("Valeurs acceptées : %(values)s.", values=", ".join(services.SORTS)))
    check.check()
    criteria = criteria_from(request.args)
    if criteria.is_empty:
        # Nothing asked, nothing found: listing every file is the armoires' endpoint's job.
        return jsonify({"items": [], "total": 0, "total_capped": False, "page": 1, "per_page": per_page})
    results = services.search_files(current_user.organization_id, criteria, page, per_page)
    return jsonify(
        {
            "items": [
                {
                    "id": hit.file.id,
                    "name": hit.file.name,
                    "path": " / ".join(part for part in (hit.armoire_name, hit.path) if part),
                    "armoire_id": hit.file.armoire_id,
                    "folder_id": hit.file.folder_id,
                    "size": hit.file.size,
                    "mime_type": hit.file.mime_type,
                    "modified_at": iso(hit.file.updated_at),
                }
                for hit in results.hits
            ],
            # Counting stops at COUNT_CAP: beyond it total is COUNT_CAP and total_capped is true.
            "total": results.page.total,
            "total_capped": results.capped,
            "page": results.page.number,
            "per_page": results.page.per_page,
        }
    )
