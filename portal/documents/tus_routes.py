"""Resumable uploads for the browser (tus 1.0 through tus-js-client): session + CSRF.

Same protocol as /api/v1/uploads/ (portal/documents/tus.py). The CSRF token comes in the
X-CSRFToken header (static/js/upload_queue.js sends it on every request); Flask-WTF checks
it before the view for POST, PATCH and DELETE without reading the body.
"""

from __future__ import annotations

from flask import Response, request, url_for

from portal.database import reads_first
from portal.documents import bp, tus
from portal.security.permissions import Permission, requires
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
@requires(Permission.DOCUMENT_WRITE)
@reads_first
@tus.tus_view
def tus_patch(uid: str) -> Response:
    return tus.patch(uid, current_actor(), {"via": "web"})
