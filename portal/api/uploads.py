"""Resumable uploads of /api/v1 (tus 1.0, see portal/documents/tus.py): bearer token."""

from __future__ import annotations

from flask import Response, jsonify, url_for

from portal.api import bp
from portal.api.auth import rate_limit_key
from portal.api.files import _upload_limit
from portal.api.routes import iso
from portal.database import reads_first
from portal.documents import tus
from portal.extensions import limiter
from portal.security.permissions import Permission, public, requires
from portal.web.bodies import streams_body
from portal.web.context import current_actor

UID = "string(length=32)"


@bp.route("/uploads/", methods=["OPTIONS"])
@public
def tus_options() -> Response:
    # Discovery (Tus-Version, extensions, maximum size): nothing about any upload.
    return tus.options()


@bp.post("/uploads/")
@requires(Permission.DOCUMENT_WRITE)
@limiter.shared_limit(_upload_limit, scope="api-upload", key_func=rate_limit_key, override_defaults=False)
@tus.tus_view
def tus_create() -> Response:
    return tus.create(current_actor(), "api", lambda uid: url_for("api.tus_upload", upload_id=uid, _external=True))


@bp.route(f"/uploads/<{UID}:upload_id>", methods=["GET", "HEAD"])
@requires(Permission.DOCUMENT_WRITE)
@tus.tus_view
def tus_upload(upload_id: str) -> Response:
    from flask import request

    if request.method == "HEAD":
        return tus.head(upload_id)
    body = tus.receipt(upload_id)
    body["expires_at"] = iso(body["expires_at"])
    if "created_at" in body:
        body["created_at"] = iso(body["created_at"])
    return jsonify(body)


@bp.patch(f"/uploads/<{UID}:upload_id>")
@streams_body
@requires(Permission.DOCUMENT_WRITE)
@reads_first
@tus.tus_view
def tus_patch(upload_id: str) -> Response:
    return tus.patch(upload_id, current_actor(), {"via": "api"})


@bp.delete(f"/uploads/<{UID}:upload_id>")
@requires(Permission.DOCUMENT_WRITE)
@tus.tus_view
def tus_terminate(upload_id: str) -> Response:
    return tus.terminate(upload_id)
