"""The tus 1.0 protocol (core, creation, termination, checksum) around documents.services.resumable.

Shared by the API (``/api/v1/uploads/``, bearer token) and the browser
(``/envois/``, session + CSRF): headers in, headers out, nothing about who is calling.
See https://tus.io/protocols/resumable-upload. Extensions not offered: creation-with-upload,
creation-defer-length, concatenation, expiration headers on HEAD (Upload-Expires is sent on
creation and PATCH responses).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from flask import Response, current_app, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.exceptions import ClientDisconnected

from portal.audit.context import Actor
from portal.documents.errors import (
    DocumentError,
    FileNameTaken,
    MalformedUpload,
    NotFound,
    UnsupportedMedia,
    UploadInterrupted,
    UploadOffsetMismatch,
)
from portal.documents.models import Armoire, Folder, ResumableUpload
from portal.documents.services import conflicts, resumable
from portal.extensions import db
from portal.security.tenancy import get_scoped, log_if_cross_organization
from portal.storage.blobs import delete_blobs
from portal.web.errors import problem_response

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum"
READ_SIZE = 1 << 20
MAX_METADATA = 4096
MAX_ID = 2**63 - 1

TITLES = {
    400: _l("Requête invalide"),
    404: _l("Introuvable"),
    409: _l("Conflit"),
    410: _l("Envoi expiré"),
    412: _l("Version du protocole non prise en charge"),
    413: _l("Trop volumineux"),
    415: _l("Type de contenu non pris en charge"),
    423: _l("Envoi occupé"),
    460: _l("Somme de contrôle différente"),
}


class TusError(Exception):
    """A protocol error (status, message), answered as problem+json with the tus headers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def tus_view(view: Any) -> Any:
    """Answer the protocol's and the documents' errors as problem documents with tus headers
    (put under the permission decorator: 401 and 403 stay the blueprint's)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except (TusError, DocumentError) as error:
            return error_response(error)

    return wrapper


def tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


def options() -> Response:
    response = Response(status=204)
    response.headers["Tus-Version"] = TUS_VERSION
    response.headers["Tus-Extension"] = EXTENSIONS
    response.headers["Tus-Max-Size"] = str(current_app.config["MAX_UPLOAD_BYTES"])
    response.headers["Tus-Checksum-Algorithm"] = ",".join(resumable.CHECKSUM_ALGORITHMS)
    return tus_headers(response)


def require_version() -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise TusError(412, _("Ce serveur parle tus 1.0.0 : envoyez l'en-tête Tus-Resumable: 1.0.0."))


def error_response(error: Exception) -> Response:
    """A problem document for a tus or documents error; the transaction is rolled back."""
    db.session.rollback()
    if not isinstance(error, TusError | DocumentError):
        raise error
    status, message = error.status, error.message
    extra: dict[str, Any] = {}
    if isinstance(error, FileNameTaken):
        extra["existing_file_id"] = error.existing_file_id
    type_ = "/problems/name-taken" if extra else None
    response = problem_response(status, str(TITLES.get(status, TITLES[400])), message, type_, **extra)
    if isinstance(error, UploadOffsetMismatch):
        response.headers["Upload-Offset"] = str(error.offset)
    if status == 412:
        response.headers["Tus-Version"] = TUS_VERSION
    return tus_headers(response)


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata: key base64value,key2 base64value`` (values UTF-8)."""
    if not header:
        return {}
    if len(header) > MAX_METADATA:
        raise TusError(400, _("Upload-Metadata est trop long."))
    values: dict[str, str] = {}
    for pair in header.split(","):
        key, _space, encoded = pair.strip().partition(" ")
        if not key or key in values:
            raise TusError(400, _("Upload-Metadata est mal formé."))
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8") if encoded else ""
        except (binascii.Error, ValueError):
            raise TusError(400, _("Upload-Metadata est mal formé.")) from None
    return values


def _integer(value: str | None, name: str, *, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise TusError(400, _("L'en-tête ou le champ %(name)s est obligatoire.", name=name))
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_ID:
        raise TusError(400, _("%(name)s doit être un entier positif.", name=name))
    return int(value)


def _boolean(value: str | None) -> bool:
    if value in (None, "", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise TusError(400, _("delete_after_upload vaut true ou false."))


@dataclass
class Creation:
    armoire: Armoire
    folder: Folder | None
    filename: str
    length: int
    on_conflict: str
    delete_after_upload: bool


def _scoped(model: type, object_id: int) -> Any:
    row = get_scoped(model, object_id, current_user.organization_id)
    if row is None:
        log_if_cross_organization(model, object_id)
        raise NotFound(_("Cet élément n'existe pas ou n'est pas accessible depuis votre organisation."))
    return row


def parse_creation(default_on_conflict: str = "refuse") -> Creation:
    require_version()
    if request.headers.get("Upload-Defer-Length"):
        raise TusError(400, _("Upload-Defer-Length n'est pas pris en charge : donnez Upload-Length."))
    if request.content_length:
        raise TusError(400, _("La création d'un envoi ne porte pas de contenu (envoyez-le par PATCH)."))
    length = _integer(request.headers.get("Upload-Length"), "Upload-Length")
    assert length is not None
    if length > current_app.config["MAX_UPLOAD_BYTES"]:
        raise TusError(
            413,
            _(
                "Le fichier dépasse la taille maximale autorisée (%(mib)s Mio).",
                mib=current_app.config["MAX_UPLOAD_BYTES"] // (1024 * 1024),
            ),
        )
    metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    filename = metadata.get("filename", "")
    if not filename.strip():
        raise TusError(400, _("Upload-Metadata doit donner filename."))
    armoire_id = _integer(metadata.get("armoire_id"), "armoire_id")
    folder_id = _integer(metadata.get("folder_id"), "folder_id", required=False)
    value = metadata.get("on_conflict") or default_on_conflict
    if value not in conflicts.ON_CONFLICT:
        raise TusError(400, _("on_conflict vaut version, rename ou refuse."))
    armoire = _scoped(Armoire, armoire_id)
    folder = _scoped(Folder, folder_id) if folder_id is not None else None
    if folder is not None and folder.armoire_id != armoire.id:
        raise NotFound(_("Cet élément n'existe pas ou n'est pas accessible depuis votre organisation."))
    return Creation(armoire, folder, filename, length, value, _boolean(metadata.get("delete_after_upload")))


def create(actor: Actor, via: str, location_for: Any, default_on_conflict: str = "refuse") -> Response:
    """POST: register the upload; 201 with its Location."""
    creation = parse_creation(default_on_conflict)
    upload = resumable.create(
        actor,
        current_user.id,
        creation.armoire,
        creation.folder,
        creation.filename,
        creation.length,
        creation.on_conflict,
        creation.delete_after_upload,
        via,
    )
    uid, blob_key, expires_at = upload.uid, upload.blob_key, upload.expires_at
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        from portal.storage.blobs import get_blob_store

        get_blob_store().delete_resumable(blob_key)
        raise
    response = Response(status=201)
    response.headers["Location"] = location_for(uid)
    response.headers["Upload-Offset"] = "0"
    response.headers["Upload-Expires"] = format_datetime(expires_at, usegmt=True)
    return tus_headers(response)


def load(uid: str) -> ResumableUpload:
    if len(uid) != 32 or not all(c in "0123456789abcdef" for c in uid):
        raise NotFound(_("Cet envoi n'existe pas."))
    return resumable.get(current_user.organization_id, current_user.id, uid)


def head(uid: str) -> Response:
    require_version()
    upload = load(uid)
    resumable.require_open(upload)
    response = Response(status=200)
    response.headers["Upload-Offset"] = str(resumable.offset_of(upload))
    response.headers["Upload-Length"] = str(upload.length)
    return tus_headers(response)


def _body(remaining: int) -> Iterator[bytes]:
    """The PATCH body in chunks; a cut connection is UploadInterrupted.

    Read with ``readinto`` (as documents/upload.py does): gunicorn's ``read(n)`` assembles a
    large read from 8 KiB socket reads in Python, several times slower on a large body."""
    request.max_content_length = remaining
    stream = request.stream
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    ended = False
    while not ended:
        filled = 0
        # A read may return a few KiB: fill the buffer, so that segments are sealed whole.
        while filled < READ_SIZE:
            try:
                count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
            except (ClientDisconnected, OSError) as error:
                if filled:
                    # What arrived before the cut may complete a segment: hand it over first.
                    yield bytes(view[:filled])
                raise UploadInterrupted(_("La connexion a été coupée pendant l'envoi.")) from error
            if not count:
                ended = True
                break
            filled += count
        if filled:
            # An immutable copy: the writer seals (and hashes) it after this buffer is reused.
            yield bytes(view[:filled])


def patch(uid: str, actor: Actor, audit_details: dict[str, Any]) -> Response:
    """PATCH: append; the request sealing the last byte answers Coffre-File-Id and Coffre-Version."""
    require_version()
    if request.mimetype != "application/offset+octet-stream":
        raise UnsupportedMedia(_("Un PATCH tus porte du application/offset+octet-stream."))
    offset = _integer(request.headers.get("Upload-Offset"), "Upload-Offset")
    assert offset is not None
    checksum = resumable.parse_checksum(request.headers.get("Upload-Checksum"))
    upload = load(uid)
    if offset > upload.length:
        raise MalformedUpload(_("Upload-Offset dépasse Upload-Length."))
    expires_at, length, blob_key = upload.expires_at, upload.length, upload.blob_key
    try:
        progress = resumable.receive(actor, upload, offset, _body(length - offset), checksum, audit_details)
    except DocumentError as error:
        if getattr(error, "abandons_upload", False):
            # Refused at the end (quota, name taken): the upload cannot finish, it is removed.
            db.session.rollback()
            resumable.abandon(uid)
            db.session.commit()
        raise
    if progress.file_id is not None:
        try:
            db.session.commit()
        except BaseException:
            db.session.rollback()
            # The blob was promoted under its partial key; without its rows it goes.
            delete_blobs([blob_key])
            raise
    response = Response(status=204)
    response.headers["Upload-Offset"] = str(progress.offset)
    response.headers["Upload-Expires"] = format_datetime(expires_at, usegmt=True)
    if progress.file_id is not None:
        response.headers["Coffre-File-Id"] = str(progress.file_id)
        response.headers["Coffre-Version"] = str(progress.version)
    return tus_headers(response)


def terminate(uid: str) -> Response:
    require_version()
    resumable.terminate(load(uid))
    db.session.commit()
    return tus_headers(Response(status=204))


def receipt(uid: str) -> dict[str, Any]:
    return resumable.receipt(load(uid))
