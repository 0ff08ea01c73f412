"""Selections in an armoire's list: move, trash (with undo), restore, download as one ZIP.

Answers to HTMX are the refreshed list plus an ``HX-Trigger`` "coffre:toast" event that
static/js/app.js shows as a toast (with an undo button for the trash); without HTMX they
fall back to a flash message and a redirect.
"""

from __future__ import annotations

from flask import Response, flash, g, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from portal.documents import bp
from portal.documents.errors import InvalidName, NotFound
from portal.documents.forms import ConfirmForm
from portal.documents.models import Armoire, Folder
from portal.documents.routes import _browse, _folder_from_arg, _location, content_disposition
from portal.documents.services import bulk, reading
from portal.extensions import db
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.web.context import current_actor
from portal.web.htmx import is_htmx, redirect_or_hx, with_toast

ZIP_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"


def _selection(*, trashed: bool = False):
    if not ConfirmForm().validate_on_submit():
        raise InvalidName(_("Le formulaire a expiré ou n'est pas valide. Rechargez la page et réessayez."))
    ids = bulk.parse_ids(request.form.getlist("ids"))
    files = bulk.selected_files(current_user.organization_id, ids, trashed=trashed)
    if any(file.armoire_id != g.armoire.id for file in files):
        raise NotFound(_("Un des fichiers sélectionnés n'existe plus."))
    return files


def _current_folder() -> Folder | None:
    return _folder_from_arg(g.armoire, request.form.get("dossier"))


def _answer(message: str, folder: Folder | None, undo: dict | None = None) -> Response:
    if not is_htmx():
        flash(message, "success")
        return redirect_or_hx(_location(g.armoire, folder))
    return with_toast(_browse(g.armoire, folder), message, undo)


@bp.route("/armoires/<int:armoire_id>/selection/deplacer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def bulk_move(armoire_id: int):
    files = _selection()
    armoire_part, _sep, folder_part = (request.form.get("destination") or "").partition(":")
    if not armoire_part:
        raise InvalidName(_("Choisissez une destination."))
    armoire = get_scoped_or_404(Armoire, armoire_part)
    destination = _folder_from_arg(armoire, folder_part)
    folder = _current_folder()
    count = bulk.move_files(current_actor(), files, armoire, destination)
    db.session.commit()
    where = armoire.name + (f" / {destination.name}" if destination else "")
    message = ngettext(
        "%(num)d fichier déplacé vers « %(where)s ».",
        "%(num)d fichiers déplacés vers « %(where)s ».",
        count,
        where=where,
    )
    return _answer(message, folder)


@bp.route("/armoires/<int:armoire_id>/selection/corbeille", methods=["POST"])
@requires(Permission.DOCUMENT_TRASH)
def bulk_trash(armoire_id: int):
    files = _selection()
    ids = [file.id for file in files]
    folder = _current_folder()
    count = bulk.trash_files(current_actor(), files)
    db.session.commit()
    message = ngettext("%(num)d fichier placé dans la corbeille.", "%(num)d fichiers placés dans la corbeille.", count)
    undo = {
        "url": url_for("documents.bulk_restore", armoire_id=g.armoire.id, **request.args),
        "ids": ids,
        "dossier": folder.id if folder else "",
        "label": _("Annuler"),
    }
    return _answer(message, folder, undo)


@bp.route("/armoires/<int:armoire_id>/selection/restaurer", methods=["POST"])
@requires(Permission.DOCUMENT_TRASH)
def bulk_restore(armoire_id: int):
    files = _selection(trashed=True)
    folder = _current_folder()
    count = bulk.restore_files(current_actor(), files)
    db.session.commit()
    return _answer(ngettext("%(num)d fichier restauré.", "%(num)d fichiers restaurés.", count), folder)


@bp.route("/armoires/<int:armoire_id>/selection/zip", methods=["POST"])
@requires(Permission.DOCUMENT_DOWNLOAD)
def bulk_zip(armoire_id: int):
    files = _selection()
    actor = current_actor()
    ids = [file.id for file in files]
    for file in files:
        version = file.current_version
        reading.record_download(actor, file.id, file.name, version.number if version else 0, preview=False)
    name = f"{g.armoire.name}.zip"
    db.session.commit()
    response = Response(
        stream_with_context(bulk.stream_zip(actor, ids, current_user.organization_id)),
        mimetype="application/zip",
    )
    response.headers["Content-Disposition"] = content_disposition("attachment", name)
    response.headers["Content-Security-Policy"] = ZIP_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
