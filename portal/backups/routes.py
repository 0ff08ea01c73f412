"""Backup pages: /sauvegardes, a backup's page, restore with confirmation, restore progress."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from portal.auth.reauth import requires_recent_auth
from portal.backups import bp, executor, restores, retention, services
from portal.backups.forms import SettingsForm
from portal.backups.models import Backup, Restore
from portal.backups.repository import ManifestError
from portal.extensions import db, limiter
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404, scoped
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx, render_page_or_fragment

SCOPE_FIELDS = ("file_id", "folder_id", "armoire_id")


def organization_limit() -> str:
    return current_app.config.get("COFFRE_BACKUP_RATE_LIMIT", "20/hour")


def organization_key() -> str:
    return f"org:{current_user.organization_id}" if current_user.is_authenticated else "anonymous"


def _list_context() -> dict[str, Any]:
    backups = list(
        db.session.execute(scoped(Backup, current_user.organization_id).order_by(Backup.id.desc()).limit(100)).scalars()
    )
    return {"backups": backups, "running": any(b.status == "en_cours" for b in backups)}


def _settings_form() -> SettingsForm:
    policy = retention.policy_for(current_user.organization_id)
    return SettingsForm(
        schedule=policy.schedule,
        keep_daily=policy.keep_daily,
        keep_weekly=policy.keep_weekly,
        keep_monthly=policy.keep_monthly,
    )


@bp.route("/sauvegardes")
@requires(Permission.BACKUP_MANAGE)
def index():
    return render_page_or_fragment(
        "backups/index.html", "backups/_list.html", settings_form=_settings_form(), **_list_context()
    )


@bp.route("/sauvegardes/reglages", methods=["POST"])
@requires(Permission.BACKUP_MANAGE)
def settings():
    form = SettingsForm()
    if not form.validate_on_submit():
        return render_page_or_fragment(
            "backups/settings.html", "backups/_settings.html", status=422, settings_form=form
        )
    retention.save_policy(
        current_actor(),
        retention.Policy(form.keep_daily.data, form.keep_weekly.data, form.keep_monthly.data, form.schedule.data),
    )
    db.session.commit()
    return render_page_or_fragment("backups/settings.html", "backups/_settings.html", settings_form=form, saved=True)


@bp.route("/sauvegardes", methods=["POST"])
@requires(Permission.BACKUP_MANAGE)
@limiter.shared_limit(organization_limit, scope="backups-start", key_func=organization_key)
def start():
    backup = services.start_backup(current_actor(), "manuel")
    db.session.commit()
    executor.submit(services.run_backup, backup.id)
    return redirect_or_hx(url_for("backups.index"))


def parse_scope(data: Any) -> dict[str, Any] | None:
    """One of file_id / folder_id / armoire_id (a positive integer) or all=true; None when invalid."""
    given = [name for name in (*SCOPE_FIELDS, "all") if data.get(name) not in (None, "", False)]
    if len(given) != 1:
        return None
    name = given[0]
    value = data.get(name)
    if name == "all":
        return {"all": True} if value in (True, "true", "1", "on") else None
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return {name: number} if 0 < number < 2**31 else None


@bp.route("/sauvegardes/<int:backup_id>")
@requires(Permission.BACKUP_MANAGE)
def detail(backup_id: int):
    backup = get_scoped_or_404(Backup, backup_id)
    level, problem = None, None
    try:
        # The top manifest only: the armoires; each opens on demand (``tree``).
        level = restores.tree_level(restores.load_manifest(backup)) if backup.path else None
    except services.BackupError as error:
        problem = error.message
    return render_page_or_fragment(
        "backups/detail.html", "backups/_detail.html", backup=backup, level=level, problem=problem
    )


@bp.route("/sauvegardes/<int:backup_id>/arbre")
@requires(Permission.BACKUP_MANAGE)
def tree(backup_id: int):
    """One armoire's root or one folder of a backup's tree (an HTMX fragment)."""
    backup = get_scoped_or_404(Backup, backup_id)
    armoire_id = request.args.get("armoire_id", type=int)
    folder_id = request.args.get("folder_id", type=int)
    if (armoire_id is None) == (folder_id is None):
        return render_error(400, _("Choisissez une armoire ou un dossier."))
    try:
        level = restores.tree_level(restores.load_manifest(backup), armoire_id=armoire_id, folder_id=folder_id)
    except LookupError:
        abort(404)
    except services.BackupError as error:
        return render_error(409, error.message)
    except ManifestError as error:  # a files part that is missing or damaged
        return render_error(409, _("Le manifeste de la sauvegarde est invalide : %(detail)s", detail=str(error)))
    return render_page_or_fragment("backups/tree.html", "backups/_tree.html", backup=backup, level=level)


@bp.route("/sauvegardes/<int:backup_id>/restaurer", methods=["POST"])
@requires(Permission.BACKUP_MANAGE)
@requires_recent_auth
@limiter.shared_limit(organization_limit, scope="backups-restore", key_func=organization_key, methods=["POST"])
def restore(backup_id: int):
    backup = get_scoped_or_404(Backup, backup_id)
    scope = parse_scope(request.form)
    if scope is None:
        return render_error(400, _("Choisissez ce qu'il faut restaurer."))
    if request.form.get("confirmer") != "1":
        try:
            manifest = restores.load_manifest(backup)
            plan = restores.plan_restore(manifest, scope)
        except services.BackupError as error:
            return render_error(409, error.message)
        if not (plan or manifest.scope_exists(scope)):
            abort(404)
        return render_page_or_fragment(
            "backups/confirm.html", "backups/_confirm.html", backup=backup, scope=scope, plan=plan
        )
    try:
        job = restores.start_restore(current_actor(), backup, scope)
    except services.BackupError as error:
        db.session.rollback()
        return render_error(error.status, error.message)
    db.session.commit()
    executor.submit(restores.run_restore, job.id)
    return redirect_or_hx(url_for("backups.restore_status", restore_id=job.id))


@bp.route("/restaurations/<int:restore_id>")
@requires(Permission.BACKUP_MANAGE)
def restore_status(restore_id: int):
    job = get_scoped_or_404(Restore, restore_id)
    return render_page_or_fragment("backups/restore.html", "backups/_restore.html", job=job)


def latest_restores(organization_id: int) -> list[Restore]:
    return list(
        db.session.execute(
            select(Restore).where(Restore.organization_id == organization_id).order_by(Restore.id.desc()).limit(10)
        ).scalars()
    )


from portal.backups import api  # noqa: E402,F401
