"""Resumable uploads for the browser (tus 1.0 through tus-js-client): session + CSRF.

Same protocol as /api/v1/uploads/ (portal/documents/tus.py). The CSRF token comes in the
X-CSRFToken header (static/js/upload_queue.js sends it on every request): Flask-WTF checks
it for POST and DELETE, the PATCH view checks it itself before reading the body.
"""

from __future__ import annotations

from flask import Response, g, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import validate_csrf
from werkzeug.exceptions import NotFound as HTTPNotFound
from wtforms import ValidationError

from portal.database import reads_first
from portal.documents import bp, tus
from portal.documents.errors import MalformedUpload
from portal.documents.models import Folder
from portal.documents.services import conflicts
from portal.documents.services.names import sanitize_name
from portal.extensions import csrf
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.web.bodies import streams_body
from portal.web.context import current_actor

UID = "string(length=32)"


@bp.route("/envois/", methods=["POST", "OPTIONS"])
@requires(Permission.DOCUMENT_WRITE)
@tus.tus_view
def tus_create():
    if request.method == "OPTIONS":
        return tus.options()
    return tus.create(current_actor(), "web", lambda uid: url_for("documents.tus_upload", uid=uid))


@bp.route(f"/envois/<{UID}:uid>", methods=["HEAD", "DELETE"])
@requires(Permission.DOCUMENT_WRITE)
@tus.tus_view
def tus_upload(uid: str) -> Response:
    if request.method == "DELETE":
        return tus.terminate(uid)
    return tus.head(uid)


@bp.route(f"/envois/<{UID}:uid>", methods=["PATCH"])
@streams_body
@csrf.exempt
@requires(Permission.DOCUMENT_WRITE)
@reads_first
@tus.tus_view
def tus_patch(uid: str) -> Response:
    # Checked here, not by CSRFProtect: it reads request.form, which fixes the body's stream
    # at the app-wide 1 MiB limit before this view could raise it to the upload's length.
    try:
        validate_csrf(request.headers.get("X-CSRFToken"))
    except ValidationError:
        raise MalformedUpload(
            _("Le formulaire a expiré ou n'est pas valide. Rechargez la page et réessayez.")
        ) from None
    return tus.patch(uid, current_actor(), {"via": "web"})


@bp.route("/armoires/<int:armoire_id>/conflit")
@requires(Permission.DOCUMENT_WRITE)
def upload_conflict(armoire_id: int):
    """Before an upload: 204 when the name is free in that folder, else the dialog asking
    new version / keep both / cancel (templates/documents/_conflict_dialog.html). The final
    decision is still taken by the upload itself, under the organisation lock."""
    folder_id = request.args.get("dossier", type=int)
    if folder_id is not None:
        folder = get_scoped_or_404(Folder, folder_id, current_user.organization_id)
        if folder.armoire_id != g.armoire.id:
            raise HTTPNotFound()
    name = sanitize_name(request.args.get("nom", ""))
    existing = conflicts.find_live_file(g.armoire.id, folder_id, name)
    if existing is None:
        return Response(status=204)
    return render_template(
        "documents/_conflict_dialog.html",
        name=name,
        existing=existing,
        renamed=conflicts.free_name(g.armoire.id, folder_id, name),
    )
