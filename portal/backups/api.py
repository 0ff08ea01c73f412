"""/api/v1/sauvegardes and /api/v1/restaurations: admin tokens only (BACKUP_MANAGE)."""

from __future__ import annotations

from flask import jsonify, request
from flask_babel import gettext as _
from flask_login import current_user

from portal.api import bp
from portal.api.inputs import json_or_form_body
from portal.api.problems import ApiProblem
from portal.backups import executor, restores, services
from portal.backups.models import Backup, Restore
from portal.backups.routes import organization_key, organization_limit, parse_scope
from portal.extensions import db, limiter
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404, scoped
from portal.web.context import current_actor


@bp.route("/sauvegardes")
@requires(Permission.BACKUP_MANAGE)
def api_backups():
    rows = db.session.execute(
        scoped(Backup, current_user.organization_id).order_by(Backup.id.desc()).limit(500)
    ).scalars()
    return jsonify({"items": [services.backup_row(b) for b in rows]})


@bp.route("/sauvegardes/<int:backup_id>")
@requires(Permission.BACKUP_MANAGE)
def api_backup(backup_id: int):
    return jsonify(services.backup_row(get_scoped_or_404(Backup, backup_id)))


@bp.route("/sauvegardes", methods=["POST"])
@requires(Permission.BACKUP_MANAGE)
@limiter.shared_limit(organization_limit, scope="backups-start", key_func=organization_key)
def api_start_backup():
    """201 at once, the backup running in the background; with ``?attendre=1`` (scripts)
    the backup runs in the request: 201 once done, 507 when the backup disk is full."""
    backup = services.start_backup(current_actor(), "manuel")
    db.session.commit()
    if request.args.get("attendre") not in ("1", "true"):
        executor.submit(services.run_backup, backup.id)
        return jsonify(services.backup_row(backup)), 201
    backup = services.run_backup(backup.id)
    if backup.status != "reussie":
        if services.failure_status(backup) == 507:
            raise ApiProblem(
                507, _("Le disque des sauvegardes est plein : libérez de la place puis relancez la sauvegarde.")
            )
        raise ApiProblem(503, _("La sauvegarde a échoué : %(detail)s", detail=backup.error or ""))
    return jsonify(services.backup_row(backup)), 201


@bp.route("/sauvegardes/<int:backup_id>/restaurer", methods=["POST"])
@requires(Permission.BACKUP_MANAGE)
@limiter.shared_limit(organization_limit, scope="backups-restore", key_func=organization_key)
def api_restore(backup_id: int):
    backup = get_scoped_or_404(Backup, backup_id)
    scope = parse_scope(json_or_form_body())
    if scope is None:
        raise ApiProblem(
            422, _("Indiquez exactement un de file_id, folder_id, armoire_id (entier positif) ou all: true.")
        )
    try:
        job = restores.start_restore(current_actor(), backup, scope)
    except services.BackupError as error:
        raise ApiProblem(error.status, error.message, error.problem_type) from None
    db.session.commit()
    executor.submit(restores.run_restore, job.id)
    return jsonify(restores.restore_row(job)), 202


@bp.route("/restaurations/<int:restore_id>")
@requires(Permission.BACKUP_MANAGE)
def api_restore_status(restore_id: int):
    return jsonify(restores.restore_row(get_scoped_or_404(Restore, restore_id)))
