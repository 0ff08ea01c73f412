from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from flask import Response, current_app, flash, g, make_response, render_template, request, url_for
from flask_babel import format_decimal, get_locale, ngettext
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import validate_csrf
from sqlalchemy import select
from werkzeug.exceptions import NotFound as HTTPNotFound
from wtforms import ValidationError

from portal.audit.context import Actor
from portal.auth.reauth import requires_recent_auth
from portal.compliance.errors import ReasonRequired
from portal.database import reads_first, writes_on_get
from portal.documents import bp
from portal.documents.errors import (
    DocumentError,
    FileNameTaken,
    FileTooLarge,
    IntegrityFailure,
    InvalidName,
    MalformedUpload,
    UnsupportedMedia,
)
from portal.documents.forms import ArmoireForm, ConfirmForm, FolderForm, ForcedDeletionForm, MoveForm, RenameForm
from portal.documents.models import Armoire, File, Folder
from portal.documents.services import armoires as armoire_services
from portal.documents.services import conflicts, files, folders, listing, names, reading, uploads
from portal.documents.services import trash as trash_services
from portal.documents.services import versions as version_services
from portal.documents.sortkey import sort_key
from portal.documents.upload import FORM_OVERHEAD, FieldPart, upload_reader
from portal.extensions import csrf, db
from portal.security.permissions import Permission, has_permission, requires
from portal.security.tenancy import get_scoped_or_404, scoped
from portal.storage.blobs import delete_blobs
from portal.web.bodies import streams_body
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import (
    flash_undo,
    is_htmx,
    redirect_or_hx,
    render_page_or_fragment,
    retarget,
    wants_fragment,
    with_toast,
)

logger = logging.getLogger(__name__)

# Multipart framing around one file: headers, boundaries and the CSRF field.
DOWNLOAD_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"
PREVIEW_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"


# ---------------------------------------------------------------- plumbing


@bp.before_request
def _load_scoped_objects() -> None:
    """Another organisation's armoire, folder or file is a 404 before any permission check."""
    if not current_user.is_authenticated or not request.view_args:
        return
    org_id = current_user.organization_id
    args = request.view_args
    if "armoire_id" in args:
        g.armoire = get_scoped_or_404(Armoire, args["armoire_id"], org_id)
    if "folder_id" in args:
        g.folder = get_scoped_or_404(Folder, args["folder_id"], org_id)
        if g.folder.armoire_id != g.armoire.id:
            raise HTTPNotFound()
    if "file_id" in args:
        file = get_scoped_or_404(File, args["file_id"], org_id)
        if file.deleted_at is not None or file.purged_at is not None:
            raise HTTPNotFound()
        g.file = file
    if "trashed_id" in args:
        file = get_scoped_or_404(File, args["trashed_id"], org_id)
        if file.deleted_at is None or file.purged_at is not None:
            raise HTTPNotFound()
        g.file = file


@bp.errorhandler(DocumentError)
def _document_error(error: DocumentError) -> Response:
    from portal.compliance.errors import DeletionRefused
    from portal.compliance.policy import journal_document_error

    journal_document_error(error)
    if isinstance(error, DeletionRefused):
        bypass_url = _bypass_url(error)
        if bypass_url is not None:
            return render_page_or_fragment(
                "documents/deletion_refused.html",
                "documents/_deletion_refused.html",
                status=error.status,
                message=error.message,
                bypass_url=bypass_url,
                form=ForcedDeletionForm(formdata=None),
                purge=error.action == "purge",
                file_id=error.file_id,
            )
    endpoint = getattr(error, "link_endpoint", None)
    return render_error(error.status, error.message, link=url_for(endpoint) if endpoint else None)


# The single-file deletions that a member holding the bypass grant may force past a
# gouvernance rule: the refused view, its bypass twin and the URL argument naming the file.
BYPASS_VIEWS = {
    "documents.trash_file": ("documents.trash_file_bypass", "file_id"),
    "documents.trash_file_bypass": ("documents.trash_file_bypass", "file_id"),
    "documents.purge_file": ("documents.purge_file_bypass", "trashed_id"),
    "documents.purge_file_bypass": ("documents.purge_file_bypass", "trashed_id"),
}


def _bypass_url(refusal) -> str | None:
    """Where the 423 page's bypass form posts, for a member who may bypass; else None (the
    page then only explains)."""
    view = BYPASS_VIEWS.get(request.endpoint or "")
    if view is None or not refusal.overridable or refusal.file_id is None:
        return None
    if not has_permission(current_user, Permission.RETENTION_BYPASS):
        return None
    endpoint, argument = view
    return url_for(endpoint, **{argument: refusal.file_id})


def _bypass_reason() -> str:
    form = ForcedDeletionForm()
    if not form.validate_on_submit():
        raise ReasonRequired(_("Un motif est obligatoire pour contourner la conservation (500 caractères au plus)."))
    return form.motif.data.strip()


def _folder_from_arg(armoire: Armoire, value: object) -> Folder | None:
    if value in (None, ""):
        return None
    folder = get_scoped_or_404(Folder, value)
    if folder.armoire_id != armoire.id:
        raise HTTPNotFound()
    return folder


def _location(armoire: Armoire, folder: Folder | None) -> str:
    if folder is None:
        return url_for("documents.armoire", armoire_id=armoire.id)
    return url_for("documents.folder", armoire_id=armoire.id, folder_id=folder.id)


def content_disposition(kind: str, name: str) -> str:
    """RFC 6266 header value: an ASCII fallback plus the exact UTF-8 name."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = "".join(ch if ch.isalnum() or ch in "._- ()" else "_" for ch in ascii_name).strip() or "fichier"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# ---------------------------------------------------------------- armoires


@bp.route("/armoires")
@requires(Permission.DOCUMENT_READ)
def armoires():
    items = sorted(
        db.session.execute(scoped(Armoire, current_user.organization_id)).scalars(), key=lambda a: sort_key(a.name)
    )
    return render_page_or_fragment(
        "documents/armoires.html",
        "documents/_armoires.html",
        armoires=items,
        form=ArmoireForm(),
        rename_form=RenameForm(),
        confirm=ConfirmForm(),
    )


@bp.route("/armoires", methods=["POST"])
@requires(Permission.ARMOIRE_MANAGE)
def create_armoire():
    form = ArmoireForm()
    if not form.validate_on_submit():
        raise InvalidName(_("Le nom de l'armoire est obligatoire (120 caractères au plus)."))
    armoire = armoire_services.create_armoire(current_actor(), form.name.data, form.description.data)
    db.session.commit()
    flash(_("Armoire « %(name)s » créée.", name=armoire.name), "success")
    return redirect_or_hx(url_for("documents.armoire", armoire_id=armoire.id))


@bp.route("/armoires/<int:armoire_id>/renommer", methods=["POST"])
@requires(Permission.ARMOIRE_MANAGE)
def rename_armoire(armoire_id: int):
    form = RenameForm()
    if not form.validate_on_submit():
        raise InvalidName(_("Le nouveau nom est obligatoire."))
    armoire_services.rename_armoire(current_actor(), g.armoire, form.name.data)
    db.session.commit()
    return redirect_or_hx(url_for("documents.armoires"))


@bp.route("/armoires/<int:armoire_id>/supprimer", methods=["POST"])
@requires(Permission.ARMOIRE_MANAGE)
def delete_armoire(armoire_id: int):
    if not ConfirmForm().validate_on_submit():
        raise MalformedUpload(_("Le formulaire n'est pas valide."))
    name = g.armoire.name
    armoire_services.delete_armoire(current_actor(), g.armoire)
    db.session.commit()
    flash(_("Armoire « %(name)s » supprimée.", name=name), "success")
    return redirect_or_hx(url_for("documents.armoires"))


def _rename_form(folder: Folder | None) -> RenameForm:
    form = RenameForm()
    if folder is not None and not form.name.data:
        form.name.data = folder.name
    return form


def _browse(armoire: Armoire, folder: Folder | None):
    org_id = current_user.organization_id
    sort = request.args.get("tri", "name")
    search = request.args.get("q", "")
    files = listing.list_files(org_id, armoire, folder, sort, search, request.args.get("page", 1))
    return render_page_or_fragment(
        "documents/armoire.html",
        "documents/_files.html",
        armoire=armoire,
        folder=folder,
        trail=folders.folder_trail(folder),
        folders=folders.list_folders(org_id, armoire, folder),
        tree=folders.folder_tree(org_id, armoire),
        open_ids={item.id for item in folders.folder_trail(folder)},
        move_choices=lambda: _move_choices(org_id),
        files=files,
        sort=sort if sort in listing.SORTS else "name",
        search=search,
        folder_form=FolderForm(),
        rename_form=_rename_form(folder),
        confirm=ConfirmForm(),
        parent_choices=folders.folder_choices(org_id, armoire, folder) if folder is not None else [],
        list_url=_location(armoire, folder),
        list_args={key: value for key, value in (("tri", sort), ("q", search), ("page", str(files.number))) if value},
        max_upload=current_app.config["MAX_UPLOAD_BYTES"],
    )


@bp.route("/armoires/<int:armoire_id>")
@requires(Permission.DOCUMENT_READ)
def armoire(armoire_id: int):
    return _browse(g.armoire, None)


@bp.route("/armoires/<int:armoire_id>/dossiers/<int:folder_id>")
@requires(Permission.DOCUMENT_READ)
def folder(armoire_id: int, folder_id: int):
    return _browse(g.armoire, g.folder)


@bp.route("/armoires/<int:armoire_id>/dossiers", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def create_folder(armoire_id: int):
    form = FolderForm()
    parent = _folder_from_arg(g.armoire, request.form.get("parent_id"))
    if not form.validate_on_submit():
        raise InvalidName(_("Le nom du dossier est obligatoire (255 caractères au plus)."))
    folder = folders.create_folder(current_actor(), g.armoire, parent, form.name.data)
    db.session.commit()
    return redirect_or_hx(_location(g.armoire, folder))


@bp.route("/armoires/<int:armoire_id>/dossiers/<int:folder_id>/renommer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def rename_folder(armoire_id: int, folder_id: int):
    form = RenameForm()
    if not form.validate_on_submit():
        raise InvalidName(_("Le nouveau nom est obligatoire (255 caractères au plus)."))
    folders.rename_folder(current_actor(), g.folder, form.name.data)
    db.session.commit()
    flash(_("Dossier renommé."), "success")
    return redirect_or_hx(_location(g.armoire, g.folder))


@bp.route("/armoires/<int:armoire_id>/dossiers/<int:folder_id>/deplacer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def move_folder(armoire_id: int, folder_id: int):
    if not ConfirmForm().validate_on_submit() or "parent_id" not in request.form:
        raise InvalidName(_("Choisissez une destination."))
    parent = _folder_from_arg(g.armoire, request.form.get("parent_id"))
    folders.move_folder(current_actor(), g.folder, parent)
    db.session.commit()
    flash(_("Dossier déplacé."), "success")
    return redirect_or_hx(_location(g.armoire, g.folder))


@bp.route("/armoires/<int:armoire_id>/dossiers/<int:folder_id>/supprimer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def delete_folder(armoire_id: int, folder_id: int):
    if not ConfirmForm().validate_on_submit():
        raise MalformedUpload(_("Le formulaire n'est pas valide."))
    folder = g.folder
    parent = db.session.get(Folder, folder.parent_id) if folder.parent_id else None
    name = folder.name
    folders.delete_folder(current_actor(), folder)
    db.session.commit()
    flash(_("Dossier « %(name)s » supprimé.", name=name), "success")
    return redirect_or_hx(_location(g.armoire, parent))


# ---------------------------------------------------------------- uploads


def _csrf_valid(token: str | None) -> bool:
    if not token:
        return False
    try:
        validate_csrf(token)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True)
class _Stored:
    """What the answer to an upload shows of one stored file, read before the commit: the
    commit expires the rows, and reloading them opened a third transaction (on SQLite an
    IMMEDIATE one, holding the write lock while the answer was rendered)."""

    id: int
    name: str
    size: int
    number: int


# The classic form's choice when a name is taken: ask (answer with the conflict page, store
# nothing), or what the API's on_conflict says.
WEB_ON_CONFLICT = ("ask", "version", "rename")


def _web_on_conflict(value: str | None) -> str:
    if value in (None, ""):
        return "ask"
    if value not in WEB_ON_CONFLICT:
        raise InvalidName(_("Choix inconnu pour un nom déjà pris : demander, nouvelle version ou garder les deux."))
    return value


def _receive(armoire: Armoire, folder: Folder | None, file: File | None) -> tuple[list[_Stored], list[str]]:
    """Stream every file part of the body into sealed blobs, then add all rows in one short
    transaction and commit once; answers the stored files, or, when the choice for a taken
    name is "ask" and some names are taken, nothing stored and those names.

    The choice comes from the query string (the conflict page's buttons) or an ``on_conflict``
    field placed before the file parts (the form's radio buttons).

    No transaction is open while the body is read (uploads.seal_upload ends the read-only
    one first): a slow client must not hold the database's write lock. The answer's language
    is settled first, while the signed-in user is loaded: after the commits it would cost a
    reload of that row (and a transaction). The CSRF token
    (header, or a field placed before the file) is checked before any file byte is accepted;
    on any failure the transaction rolls back and every blob of this request is deleted.
    """
    max_bytes = current_app.config["MAX_UPLOAD_BYTES"]
    if request.content_length is not None and request.content_length > max_bytes + FORM_OVERHEAD:
        raise FileTooLarge(
            _("Le fichier dépasse la taille maximale autorisée (%(size)s Mio).", size=max_bytes // (1024 * 1024))
        )
    get_locale()
    reader = upload_reader(request, max_bytes)
    csrf_ok = _csrf_valid(request.headers.get("X-CSRFToken"))
    actor = current_actor()
    comment: str | None = None
    on_conflict = _web_on_conflict(request.args.get("on_conflict"))
    sealed: list[uploads.SealedUpload] = []
    stored: list[_Stored] = []
    taken: list[str] = []
    try:
        for part in reader.parts():
            if isinstance(part, FieldPart):
                if part.name == "csrf_token" and not csrf_ok:
                    csrf_ok = _csrf_valid(part.value)
                elif part.name == "comment":
                    comment = part.value
                elif part.name == "on_conflict" and "on_conflict" not in request.args:
                    on_conflict = _web_on_conflict(part.value)
                continue
            if not csrf_ok:
                raise MalformedUpload(_("Le formulaire a expiré ou n'est pas valide. Rechargez la page et réessayez."))
            if not part.filename:
                continue
            if file is None:
                choice = "refuse" if on_conflict == "ask" else on_conflict
                plan = uploads.prepare_upload(actor, armoire, folder, part.filename, None, comment, on_conflict=choice)
            elif sealed:
                raise MalformedUpload(_("Une nouvelle version ne contient qu'un seul fichier."))
            else:
                plan = uploads.prepare_version(actor, file, part.filename, None, comment)
            sealed.append(uploads.seal_upload(plan, part.chunks))
        if not sealed:
            raise InvalidName(_("Aucun fichier reçu : choisissez au moins un fichier."))
        # T1: the whole body has been read; only short database work from here.
        for item in sealed:
            try:
                version = uploads.finish_upload(item)
            except FileNameTaken:
                if file is not None:
                    raise
                # Every taken name is listed at once; nothing of this request is kept.
                taken.append(item.plan.filename)
                continue
            stored.append(_Stored(version.file_id, item.plan.filename, version.size, version.number))
        if taken:
            db.session.rollback()
            delete_blobs([item.storage_key for item in sealed])
            return [], taken
        db.session.commit()
    except BaseException:
        db.session.rollback()
        delete_blobs([item.storage_key for item in sealed])
        raise
    return stored, []


def _conflict_page(armoire: Armoire, folder: Folder | None, taken: list[str]) -> Response:
    """409: the names already in the folder, nothing stored, and the form to send the files
    again with the choice (new version / keep both) made; a browser cannot re-send a file
    body by itself, so the person picks the files again."""
    folder_id = folder.id if folder else None
    items = [(name, conflicts.free_name(armoire.id, folder_id, name)) for name in dict.fromkeys(taken)]
    return render_page_or_fragment(
        "documents/upload_conflict.html",
        "documents/_upload_conflict.html",
        status=409,
        armoire=armoire,
        folder=folder,
        items=items,
        location=_location(armoire, folder),
    )


@bp.route("/armoires/<int:armoire_id>/televerser", methods=["POST"])
@streams_body
@csrf.exempt
@requires(Permission.DOCUMENT_WRITE)
@reads_first
def upload(armoire_id: int):
    folder = _folder_from_arg(g.armoire, request.args.get("dossier"))
    location = _location(g.armoire, folder)
    stored, taken = _receive(g.armoire, folder, None)
    if taken:
        return _conflict_page(g.armoire, folder, taken)
    if is_htmx():
        return render_page_or_fragment(
            "documents/upload_result.html", "documents/_upload_result.html", status=201, files=stored
        )
    flash(ngettext("%(num)d fichier ajouté.", "%(num)d fichiers ajoutés.", len(stored)), "success")
    return redirect_or_hx(location)


@bp.route("/fichiers/<int:file_id>/version", methods=["POST"])
@streams_body
@csrf.exempt
@requires(Permission.DOCUMENT_WRITE)
@reads_first
def add_version(file_id: int):
    location = url_for("documents.file", file_id=g.file.id)
    file_id, armoire_id, folder_id = g.file.id, g.file.armoire_id, g.file.folder_id
    try:
        (stored,), _taken = _receive(g.file.armoire, None, g.file)
    except DocumentError as error:
        if not _from_list():
            raise
        return _dialog("version", db.session.get(File, file_id), error)
    if _from_list():
        message = _("Version %(number)s ajoutée.", number=stored.number)
        return _changed_in_list(armoire_id, folder_id, message)
    if is_htmx():
        return render_page_or_fragment(
            "documents/upload_result.html", "documents/_upload_result.html", status=201, files=[stored]
        )
    flash(_("Version %(number)s ajoutée.", number=stored.number), "success")
    return redirect_or_hx(location)


# ---------------------------------------------------------------- file page


def _move_choices(org_id: int) -> list[tuple[str, str]]:
    choices = []
    armoires = sorted(db.session.execute(scoped(Armoire, org_id)).scalars(), key=lambda a: sort_key(a.name))
    folders = db.session.execute(scoped(Folder, org_id)).scalars().all()
    by_id = {folder.id: folder for folder in folders}

    def path(folder: Folder) -> str:
        names, seen = [], set()
        while folder is not None and folder.id not in seen:
            seen.add(folder.id)
            names.append(folder.name)
            folder = by_id.get(folder.parent_id) if folder.parent_id else None
        return " / ".join(reversed(names))

    for armoire in armoires:
        choices.append((f"{armoire.id}:", armoire.name))
        for folder in sorted((f for f in folders if f.armoire_id == armoire.id), key=lambda f: sort_key(path(f))):
            choices.append((f"{armoire.id}:{folder.id}", f"{armoire.name} / {path(folder)}"))
    return choices


def _move_form(file: File) -> MoveForm:
    form = MoveForm()
    form.destination.choices = _move_choices(current_user.organization_id)
    if not form.destination.data:
        form.destination.data = f"{file.armoire_id}:{file.folder_id or ''}"
    return form


def _file_page(file: File, status: int = 200) -> Response:
    folder = db.session.get(Folder, file.folder_id) if file.folder_id else None
    rename_form = RenameForm()
    rename_form.name.data = file.name
    return render_page_or_fragment(
        "documents/file.html",
        "documents/_file_details.html",
        status=status,
        file=file,
        armoire=file.armoire,
        trail=folders.folder_trail(folder),
        versions=version_services.list_versions(file),
        previewable=names.is_previewable(file.mime_type, file.name),
        text_preview=names.is_text_previewable(file.mime_type, file.name),
        rename_form=rename_form,
        move_form=_move_form(file),
        confirm=ConfirmForm(),
    )


@bp.route("/fichiers/<int:file_id>")
@requires(Permission.DOCUMENT_READ)
def file(file_id: int):
    return _file_page(g.file)


# ---------------------------------------------------------------- row dialogs
#
# The list's row menu opens rename, move and new version in a <dialog> fetched by htmx
# (templates/documents/_<action>_fragment.html). Its form posts with ``vue=liste`` (plus the
# list's sort, filter and page): success answers with the refreshed list, retargeted onto
# #file-list, and a toast; a refused name or bad input answers with the dialog again, the
# reason in it, at the error's status. Without JavaScript the menu's links open the file page.

DIALOGS = {
    "rename": "documents/_rename_fragment.html",
    "move": "documents/_move_fragment.html",
    "version": "documents/_version_fragment.html",
}
DIALOG_ANCHORS = {"rename": "renommer", "move": "deplacer", "version": "nouvelle-version"}


def _from_list() -> bool:
    return request.args.get("vue") == "liste" and wants_fragment()


def _list_args() -> dict[str, str]:
    """The list's state (sort, filter, page) carried through a dialog to the refreshed list."""
    return {key: request.args[key] for key in ("tri", "q", "page") if request.args.get(key)}


def _dialog(kind: str, file: File, error: DocumentError | None = None) -> Response:
    context: dict = {"file": file, "list_args": _list_args(), "error": error.message if error else None}
    if kind == "rename":
        form = RenameForm()
        if not form.name.data:
            form.name.data = file.name
        context["form"] = form
    elif kind == "move":
        context["form"] = _move_form(file)
    response = make_response(render_template(DIALOGS[kind], **context), error.status if error else 200)
    response.vary.add("HX-Request")
    return response


def _changed_in_list(armoire_id: int, folder_id: int | None, message: str) -> Response:
    """The list the dialog was opened from (the file's folder before the change), with a toast."""
    armoire = db.session.get(Armoire, armoire_id)
    folder = db.session.get(Folder, folder_id) if folder_id is not None else None
    return retarget(with_toast(_browse(armoire, folder), message), "#file-list")


@bp.route("/fichiers/<int:file_id>/dialogue/<any(rename, move, version):kind>")
@requires(Permission.DOCUMENT_WRITE)
def file_dialog(file_id: int, kind: str):
    if not wants_fragment():
        return redirect_or_hx(url_for("documents.file", file_id=g.file.id, _anchor=DIALOG_ANCHORS[kind]))
    return _dialog(kind, g.file)


@bp.route("/fichiers/<int:file_id>/versions")
@requires(Permission.DOCUMENT_READ)
def versions(file_id: int):
    return render_page_or_fragment(
        "documents/versions.html",
        "documents/_versions.html",
        file=g.file,
        versions=version_services.list_versions(g.file),
        confirm=ConfirmForm(),
    )


@bp.route("/fichiers/<int:file_id>/versions/<int:number>/restaurer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def restore_version(file_id: int, number: int):
    if not ConfirmForm().validate_on_submit():
        raise MalformedUpload(_("Le formulaire n'est pas valide."))
    actor = current_actor()
    keys: list[str] = []
    try:
        version = uploads.restore_version(actor, g.file, number)
        keys.append(version.storage_key)
        db.session.commit()
    except IntegrityFailure as error:
        return _integrity_failure(actor, error)
    except BaseException:
        db.session.rollback()
        delete_blobs(keys)
        raise
    message = _("La version %(old)s a été restaurée comme version %(new)s.", old=number, new=version.number)
    if wants_fragment():
        return with_toast(_file_page(g.file), message)
    flash(message, "success")
    return redirect_or_hx(url_for("documents.file", file_id=g.file.id))


@bp.route("/fichiers/<int:file_id>/renommer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def rename_file(file_id: int):
    file = g.file
    try:
        form = RenameForm()
        if not form.validate_on_submit():
            raise InvalidName(_("Le nouveau nom est obligatoire (255 caractères au plus)."))
        files.rename_file(current_actor(), file, form.name.data)
    except DocumentError as error:
        if not wants_fragment():
            raise
        db.session.rollback()
        return _dialog("rename", file, error) if _from_list() else _file_page(file, error.status)
    db.session.commit()
    return _file_changed(file, file.armoire_id, file.folder_id, _("Fichier renommé en « %(name)s ».", name=file.name))


@bp.route("/fichiers/<int:file_id>/deplacer", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def move_file(file_id: int):
    file = g.file
    armoire_before, folder_before = file.armoire_id, file.folder_id
    try:
        armoire_part, _sep, folder_part = (request.form.get("destination") or "").partition(":")
        if not ConfirmForm().validate_on_submit() or not armoire_part.isdigit():
            raise InvalidName(_("Choisissez une destination."))
        armoire = get_scoped_or_404(Armoire, armoire_part)
        folder = _folder_from_arg(armoire, folder_part)
        files.move_file(current_actor(), file, armoire, folder)
    except DocumentError as error:
        if not wants_fragment():
            raise
        db.session.rollback()
        return _dialog("move", file, error) if _from_list() else _file_page(file, error.status)
    where = armoire.name + (f" / {folder.name}" if folder else "")
    db.session.commit()
    return _file_changed(file, armoire_before, folder_before, _("Fichier déplacé vers « %(where)s ».", where=where))


def _file_changed(file: File, armoire_id: int, folder_id: int | None, message: str) -> Response:
    """After a rename or a move: the list the dialog came from, the file page's details (both
    with a toast), or, without JavaScript, a redirect to the file page and a flash."""
    if _from_list():
        return _changed_in_list(armoire_id, folder_id, message)
    if wants_fragment():
        return with_toast(_file_page(file), message)
    flash(message, "success")
    return redirect_or_hx(url_for("documents.file", file_id=file.id))


@bp.route("/fichiers/<int:file_id>/supprimer", methods=["POST"])
@requires(Permission.DOCUMENT_TRASH)
def trash_file(file_id: int):
    if not ConfirmForm().validate_on_submit():
        raise MalformedUpload(_("Le formulaire n'est pas valide."))
    return _trash(g.file, None)


@bp.route("/fichiers/<int:file_id>/supprimer/contourner", methods=["POST"])
@requires(Permission.DOCUMENT_TRASH)
@requires_recent_auth
def trash_file_bypass(file_id: int):
    """The 423 page's form: trash despite a gouvernance rule (grant, reason, fresh proof;
    retention.bypassed is journalled in the same transaction as file.deleted)."""
    return _trash(g.file, _bypass_reason())


def _trash(file: File, bypass_reason: str | None) -> Response:
    folder = db.session.get(Folder, file.folder_id) if file.folder_id else None
    trash_services.trash_file(current_actor(), file, bypass=bypass_reason is not None, bypass_reason=bypass_reason)
    db.session.commit()
    flash(_("« %(name)s » a été placé dans la corbeille.", name=file.name), "success")
    # The file page is gone: the folder's page shows the flash as a toast, with its undo.
    flash_undo(
        {
            "url": url_for("documents.bulk_restore", armoire_id=file.armoire_id),
            "ids": [file.id],
            "dossier": folder.id if folder else "",
            "label": _("Annuler"),
        }
    )
    return redirect_or_hx(_location(file.armoire, folder))


# ---------------------------------------------------------------- downloads and previews


def _integrity_failure(actor: Actor, error: IntegrityFailure) -> Response:
    """Journal the failed check (unless the stream already did) and answer with a clear page.

    ``actor`` is built before the rollback: reading the expired user afterwards would begin
    a write transaction that the journal's own one would then wait for.
    """
    db.session.rollback()
    reading.journal_integrity_failure(actor, error)
    return render_error(409, error.message)


def _send_text_preview(file: File, number: int) -> Response:
    """The first MiB of a text file as an escaped page, served sandboxed like every preview."""
    limit = names.TEXT_PREVIEW_BYTES
    actor = current_actor()
    size = version_services.get_version(file, number).size
    end = min(size, limit)
    try:
        version, chunks = reading.open_version_stream(actor, file, number, 0, end, preview=True, record_access=False)
    except IntegrityFailure as error:
        return _integrity_failure(actor, error)
    file_id, file_name, number = file.id, file.name, version.number
    try:
        # No transaction stays open while the blob is read (see _send).
        db.session.commit()
        head = bytearray()
        for chunk in chunks:
            head += chunk
            if len(head) >= end:
                break
    except IntegrityFailure as error:
        return _integrity_failure(actor, error)
    finally:
        chunks.close()
    reading.record_download(actor, file_id, file_name, number, preview=True)
    db.session.commit()
    text = names.decode_text_preview(bytes(head[:end]), truncated=size > limit)
    response = make_response(
        render_template("documents/preview_text.html", name=file_name, text=text, truncated=size > limit)
    )
    headers = response.headers
    headers["Content-Security-Policy"] = PREVIEW_CSP
    headers["X-Frame-Options"] = "SAMEORIGIN"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = "no-store"
    return response


def _send(file: File, number: int | None, *, inline: bool) -> Response:
    version = version_services.get_version(file, number)
    if inline and names.is_text_previewable(version.mime_type, file.name):
        return _send_text_preview(file, version.number)
    if inline and not names.is_previewable(version.mime_type):
        raise UnsupportedMedia(_("Aucun aperçu n'est possible pour ce type de fichier : téléchargez-le."))
    size, start, end, status = version.size, 0, version.size, 200
    if request.range is not None:
        bounds = request.range.range_for_length(size) if request.range.units == "bytes" else None
        if bounds is None:
            response = render_error(416, _("La plage demandée est hors du fichier."))
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
        start, end, status = bounds[0], bounds[1], 206
    actor = current_actor()
    try:
        version, chunks = reading.open_version_stream(
            actor, file, version.number, start, end, preview=inline, record_access=False
        )
    except IntegrityFailure as error:
        return _integrity_failure(actor, error)
    # Read now: once committed, touching an expired attribute would begin a transaction and
    # keep it open for the whole stream.
    file_id, file_name, number, mime_type = file.id, file.name, version.number, version.mime_type
    try:
        # The reads above (and before_request's) ran DEFERRED; the journal entry gets a
        # transaction of its own, which begins IMMEDIATE thanks to writes_on_get.
        db.session.commit()
        if not inline or start == 0:
            reading.record_download(actor, file_id, file_name, number, preview=inline)
        db.session.commit()
    except BaseException:
        chunks.close()
        raise
    response = Response(
        chunks,
        status=status,
        mimetype=mime_type if inline else "application/octet-stream",
    )
    headers = response.headers
    headers["Content-Length"] = str(end - start)
    headers["Accept-Ranges"] = "bytes"
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", file_name)
    headers["Content-Security-Policy"] = PREVIEW_CSP if inline else DOWNLOAD_CSP
    headers["X-Frame-Options"] = "SAMEORIGIN" if inline else "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = "no-store"
    return response


@bp.route("/fichiers/<int:file_id>/telecharger")
@requires(Permission.DOCUMENT_DOWNLOAD)
@writes_on_get
def download(file_id: int):
    return _send(g.file, request.args.get("version", type=int), inline=False)


@bp.route("/fichiers/<int:file_id>/apercu")
@requires(Permission.DOCUMENT_DOWNLOAD)
@writes_on_get
def preview(file_id: int):
    return _send(g.file, request.args.get("version", type=int), inline=True)


# ---------------------------------------------------------------- trash


@bp.route("/corbeille")
@requires(Permission.DOCUMENT_TRASH)
def trash():
    return _trash_page()


def _trash_page() -> Response:
    page = trash_services.list_trash(current_user.organization_id, request.args.get("page", 1))
    return render_page_or_fragment(
        "documents/trash.html",
        "documents/_trash.html",
        files=page,
        confirm=ConfirmForm(),
        retention_days=current_app.config["COFFRE_TRASH_RETENTION_DAYS"],
    )


@bp.route("/corbeille/<int:trashed_id>/restaurer", methods=["POST"])
@requires(Permission.DOCUMENT_TRASH)
def restore_file(trashed_id: int):
    if not ConfirmForm().validate_on_submit():
        raise MalformedUpload(_("Le formulaire n'est pas valide."))
    file = g.file
    if file.folder_id and db.session.execute(select(Folder.id).where(Folder.id == file.folder_id)).first() is None:
        file.folder_id = None
    trash_services.restore_from_trash(current_actor(), file)
    db.session.commit()
    message = _("« %(name)s » a été restauré.", name=file.name)
    if wants_fragment():
        return with_toast(_trash_page(), message)
    flash(message, "success")
    return redirect_or_hx(url_for("documents.trash"))


@bp.route("/corbeille/<int:trashed_id>/detruire", methods=["POST"])
@requires(Permission.DOCUMENT_PURGE)
def purge_file(trashed_id: int):
    if not ConfirmForm().validate_on_submit():
        raise MalformedUpload(_("Le formulaire n'est pas valide."))
    return _purge(g.file, None)


@bp.route("/corbeille/<int:trashed_id>/detruire/contourner", methods=["POST"])
@requires(Permission.DOCUMENT_PURGE)
@requires_recent_auth
def purge_file_bypass(trashed_id: int):
    """The 423 page's form: destroy despite a gouvernance rule (as trash_file_bypass)."""
    return _purge(g.file, _bypass_reason())


def _purge(file: File, bypass_reason: str | None) -> Response:
    keys = trash_services.purge_file(
        current_actor(), file, reason="purge", bypass=bypass_reason is not None, bypass_reason=bypass_reason
    )
    db.session.commit()
    delete_blobs(keys)
    flash(_("« %(name)s » a été détruit définitivement.", name=file.name), "success")
    return redirect_or_hx(url_for("documents.trash"))


@bp.app_template_filter("filesize")
def filesize(value: int | None) -> str:
    """Human-readable size in the user's language: 1 Kio = 1024 o in French, KiB and B in English."""
    size = float(value or 0)
    # The unit symbols are translated (msgstr "KiB"…), not spelled per language here.
    units = (_("o"), _("Kio"), _("Mio"), _("Gio"))
    index = 0
    while size >= 1024 and index < len(units) - 1:
        size /= 1024
        index += 1
    pattern = "#,##0" if index == 0 else "#,##0.#"
    return f"{format_decimal(size, format=pattern)} {units[index]}"


@bp.app_template_filter("icon_kind")
def icon_kind(mime_type: str | None, name: str | None = None) -> str:
    return names.icon_kind(mime_type, name)


@bp.app_template_filter("is_previewable")
def is_previewable(mime_type: str, name: str | None = None) -> bool:
    return names.is_previewable(mime_type, name)
