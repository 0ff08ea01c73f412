"""File endpoints of /api/v1: list, upload (streamed), read, download, versions, trash."""

from __future__ import annotations

import base64
from typing import Any

from flask import Response, current_app, jsonify, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from portal.api import bp
from portal.api.auth import rate_limit_key
from portal.api.inputs import MAX_ID, Validator
from portal.api.problems import (
    NAME_TAKEN,
    QUOTA_EXCEEDED,
    STATUS_TYPES,
    SUBSCRIPTION_READ_ONLY,
    ApiProblem,
    render_problem,
)
from portal.api.routes import iso
from portal.database import reads_first, writes_on_get
from portal.documents import errors as document_errors
from portal.documents.models import Armoire, File, FileVersion, Folder
from portal.documents.services import conflicts, listing, reading, trash, uploads, versions
from portal.documents.upload import FieldPart, FilePart, upload_reader
from portal.extensions import db, limiter
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped, log_if_cross_organization
from portal.storage.blobs import delete_blobs
from portal.web.bodies import streams_body
from portal.web.context import current_actor

MAX_FIELDS = 10
# Multipart boundaries and headers on top of the largest accepted file.
ID = f"int(max={MAX_ID})"


def _upload_limit() -> str:
    # One budget for new files and new versions together.
    return current_app.config.get("API_UPLOAD_RATE_LIMIT", "60/minute")


def file_body(file: File) -> dict[str, Any]:
    version = file.current_version
    return {
        "id": file.id,
        "name": file.name,
        "armoire_id": file.armoire_id,
        "folder_id": file.folder_id,
        "size": file.size,
        "mime_type": file.mime_type,
        "version": version.number if version else None,
        "sha256": version.sha256 if version else None,
        "created_at": iso(file.created_at),
        "updated_at": iso(file.updated_at),
        "deleted_at": iso(file.deleted_at),
    }


def version_body(version: FileVersion) -> dict[str, Any]:
    return {
        "number": version.number,
        "size": version.size,
        "sha256": version.sha256,
        "mime_type": version.mime_type,
        "comment": version.comment,
        "author_id": version.author_id,
        "created_at": iso(version.created_at),
    }


def _not_found() -> ApiProblem:
    return ApiProblem(404, _("Cet élément n'existe pas ou n'est pas accessible depuis votre organisation."))


def _armoire(armoire_id: int) -> Armoire:
    armoire = get_scoped(Armoire, armoire_id, current_user.organization_id)
    if armoire is None:
        log_if_cross_organization(Armoire, armoire_id)
        raise _not_found()
    return armoire


def _folder(armoire: Armoire, folder_id: int | None) -> Folder | None:
    if folder_id is None:
        return None
    folder = get_scoped(Folder, folder_id, current_user.organization_id)
    if folder is None:
        log_if_cross_organization(Folder, folder_id)
        raise _not_found()
    if folder.armoire_id != armoire.id:
        raise _not_found()
    return folder


def _file(file_id: int) -> File:
    file = get_scoped(File, file_id, current_user.organization_id)
    if file is None:
        log_if_cross_organization(File, file_id)
        raise _not_found()
    if file.purged_at is not None:
        raise _not_found()
    return file


@bp.get(f"/armoires/<{ID}:armoire_id>/fichiers")
@requires(Permission.DOCUMENT_READ)
def list_files(armoire_id: int) -> Response:
    check = Validator(request.args)
    folder_id = check.integer("folder")
    page = check.integer("page", maximum=1_000_000) or 1
    per_page = check.integer("per_page", maximum=100) or 25
    check.check()
    armoire = _armoire(armoire_id)
    folder = _folder(armoire, folder_id)
    result = listing.list_files(current_user.organization_id, armoire, folder, page=page, per_page=per_page)
    return jsonify(
        {
            "items": [file_body(f) for f in result.items],
            "page": result.number,
            "per_page": result.per_page,
            "total": result.total,
            "pages": result.pages,
        }
    )


def _read_upload_form() -> tuple[MultiDict[str, str], FilePart | None, Any]:
    """The text fields sent before the file part, the file part, and the remaining parts."""
    if request.mimetype != "multipart/form-data":
        raise ApiProblem(415, _("Envoyez le fichier en multipart/form-data."))
    parts = upload_reader(request, current_app.config["MAX_UPLOAD_BYTES"]).parts()
    fields: MultiDict[str, str] = MultiDict()
    for part in parts:
        if isinstance(part, FilePart):
            if part.name != "file":
                raise ApiProblem(400, _("Le fichier doit être envoyé dans le champ « file »."))
            return fields, part, parts
        if len(fields) >= MAX_FIELDS:
            raise ApiProblem(400, _("Trop de champs dans le formulaire."))
        fields.add(part.name, part.value)
    return fields, None, parts


def _finish_form(parts: Any) -> None:
    """Read to the end of the body; a second file is refused (one upload, one receipt)."""
    for part in parts:
        if isinstance(part, FilePart):
            raise ApiProblem(400, _("Un seul fichier par requête."))
        assert isinstance(part, FieldPart)


def _on_conflict(check: Validator, fields: MultiDict[str, str]) -> str:
    """``on_conflict`` from the form, else the query string; ``refuse`` when absent."""
    value = fields.get("on_conflict", request.args.get("on_conflict"))
    if value not in (None, "", *conflicts.ON_CONFLICT):
        check.error("on_conflict", _("Valeurs possibles : version, rename, refuse."))
        return "refuse"
    return conflicts.parse_on_conflict(value)


def _audit_details(delete_after_upload: bool) -> dict[str, Any]:
    # The receipt's promise (the client may now delete its copy) is journalled with the upload.
    return {"delete_after_upload": delete_after_upload, "via": "api"}


def _receipt_body(file: File, version: FileVersion, delete_local: bool) -> dict[str, Any]:
    """The receipt, read before the commit: afterwards every attribute is expired and reading
    one opens another transaction (on SQLite a POST's begins IMMEDIATE, so the answer would
    queue for the write lock behind the other uploads, then hold it while it is built)."""
    return {
        "file_id": file.id,
        "version": version.number,
        "size": version.size,
        "sha256": version.sha256,
        "delete_local": delete_local,
        "name": file.name,
        "mime_type": version.mime_type,
        "created_at": iso(version.created_at),
    }


def _receipt(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_file", file_id=body["file_id"])
    return response


def _seal_and_finish(plan: Any, part: Any, parts: Any) -> FileVersion:
    """Stream the file part into a sealed blob with no transaction open, then add the rows.

    The rest of the form is read before the rows are added, so the short final transaction
    never waits on the network.
    """
    sealed = uploads.seal_upload(plan, part.chunks)
    try:
        _finish_form(parts)
        return uploads.finish_upload(sealed)
    except BaseException:
        db.session.rollback()
        delete_blobs([sealed.storage_key])
        raise


def _commit_upload(version: FileVersion | None) -> None:
    """Commit the version row; if that fails the blob written before it is removed."""
    # Read first: after the rollback the row is gone and the object cannot reload it.
    storage_key = version.storage_key if version is not None else None
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        delete_blobs([storage_key])
        raise


@bp.post("/fichiers")
@streams_body
@requires(Permission.DOCUMENT_WRITE)
@limiter.shared_limit(_upload_limit, scope="api-upload", key_func=rate_limit_key, override_defaults=False)
@reads_first
def upload_file() -> Response:
    fields, part, parts = _read_upload_form()
    check = Validator(fields)
    armoire_id = check.integer("armoire_id", required=True)
    folder_id = check.integer("folder")
    delete_after_upload = check.boolean("delete_after_upload")
    on_conflict = _on_conflict(check, fields)
    if part is None:
        check.error("file", _("Ce champ est obligatoire (et doit suivre les autres champs)."))
    check.check()
    armoire = _armoire(armoire_id)
    folder = _folder(armoire, folder_id)
    plan = uploads.prepare_upload(
        current_actor(),
        armoire,
        folder,
        part.filename,
        None,
        audit_details=_audit_details(delete_after_upload),
        on_conflict=on_conflict,
    )
    version = _seal_and_finish(plan, part, parts)
    receipt = _receipt_body(db.session.get(File, version.file_id), version, delete_after_upload)
    _commit_upload(version)
    # Only now is the content durable (blob fsynced, row committed): the client may delete its copy.
    return _receipt(receipt)


@bp.get(f"/fichiers/<{ID}:file_id>")
@requires(Permission.DOCUMENT_READ)
def get_file(file_id: int) -> Response:
    return jsonify(file_body(_file(file_id)))


@bp.delete(f"/fichiers/<{ID}:file_id>")
@requires(Permission.DOCUMENT_TRASH)
def trash_file(file_id: int) -> tuple[str, int]:
    check = Validator(request.args)
    bypass = check.boolean("contourner")
    reason = check.string("motif", max_length=500)
    check.check()
    if bypass and not (reason or "").strip():
        # Asked before the policy: a bypass without a reason is bad input, whatever the file.
        raise ApiProblem(
            422,
            _("Un motif est obligatoire pour contourner la conservation."),
            errors=[{"field": "motif", "message": _("Ce champ est obligatoire.")}],
        )
    trash.trash_file(current_actor(), _file(file_id), bypass=bypass, bypass_reason=reason)
    db.session.commit()
    return "", 204


@bp.get(f"/fichiers/<{ID}:file_id>/contenu")
@requires(Permission.DOCUMENT_DOWNLOAD)
@writes_on_get
def download(file_id: int) -> Response:
    check = Validator(request.args)
    number = check.integer("version")
    check.check()
    file = _file(file_id)
    if file.deleted_at is not None:
        raise _not_found()
    actor = current_actor()
    try:
        version, chunks = reading.open_version_stream(actor, file, number)
    except document_errors.IntegrityFailure as failure:
        db.session.rollback()
        reading.journal_integrity_failure(actor, failure)
        raise
    # Read what the headers need before the commit: afterwards a lazy load would reopen a
    # transaction and hold it for the whole stream.
    size, number, sha256, name = version.size, version.number, version.sha256, file.name
    db.session.commit()
    response = Response(chunks, mimetype="application/octet-stream", direct_passthrough=True)
    response.content_length = size
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(name)}"
    response.headers["X-Content-Version"] = str(number)
    if sha256:
        digest = base64.b64encode(bytes.fromhex(sha256)).decode()
        response.headers["Repr-Digest"] = f"sha-256=:{digest}:"
        response.headers["Digest"] = f"sha-256={digest}"
        response.headers["X-Content-SHA256"] = sha256
    return response


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@bp.get(f"/fichiers/<{ID}:file_id>/versions")
@requires(Permission.DOCUMENT_READ)
def list_versions(file_id: int) -> Response:
    file = _file(file_id)
    return jsonify({"items": [version_body(v) for v in versions.list_versions(file)]})


@bp.post(f"/fichiers/<{ID}:file_id>/versions")
@streams_body
@requires(Permission.DOCUMENT_WRITE)
@limiter.shared_limit(_upload_limit, scope="api-upload", key_func=rate_limit_key, override_defaults=False)
@reads_first
def add_version(file_id: int) -> Response:
    file = _file(file_id)
    fields, part, parts = _read_upload_form()
    check = Validator(fields)
    comment = check.string("comment", max_length=500)
    delete_after_upload = check.boolean("delete_after_upload")
    if part is None:
        check.error("file", _("Ce champ est obligatoire (et doit suivre les autres champs)."))
    check.check()
    plan = uploads.prepare_version(
        current_actor(), file, part.filename, None, comment, audit_details=_audit_details(delete_after_upload)
    )
    version = _seal_and_finish(plan, part, parts)
    receipt = _receipt_body(file, version, delete_after_upload)
    _commit_upload(version)
    return _receipt(receipt)


def handle_document_error(error: document_errors.DocumentError) -> Response:
    from portal.compliance.errors import DeletionRefused
    from portal.compliance.policy import journal_document_error

    journal_document_error(error)
    if isinstance(error, DeletionRefused):
        return render_problem(ApiProblem(423, error.message, error.type, extra=error.problem_fields()))
    status = error.status
    type_ = QUOTA_EXCEEDED if isinstance(error, document_errors.QuotaExceeded) else STATUS_TYPES.get(status)
    extra: dict[str, Any] = {}
    if isinstance(error, document_errors.FileNameTaken):
        type_ = NAME_TAKEN
        extra["existing_file_id"] = error.existing_file_id
    if isinstance(error, document_errors.SubscriptionReadOnly):
        type_ = SUBSCRIPTION_READ_ONLY
    return render_problem(ApiProblem(status, error.message, type_, extra=extra))
