"""Folders of an armoire for /api/v1: the desktop uploader resolves "Armoire/Dossier/Sous-dossier"."""

from __future__ import annotations

from flask import Response, jsonify
from flask_login import current_user
from sqlalchemy import select

from portal.api import bp
from portal.api.files import ID, _armoire
from portal.documents.models import Folder
from portal.extensions import db
from portal.security.permissions import Permission, requires


@bp.get(f"/armoires/<{ID}:armoire_id>/dossiers")
@requires(Permission.DOCUMENT_READ)
def list_folders(armoire_id: int) -> Response:
    armoire = _armoire(armoire_id)
    folders = db.session.execute(
        select(Folder.id, Folder.name, Folder.parent_id)
        .where(Folder.armoire_id == armoire.id, Folder.organization_id == current_user.organization_id)
        .order_by(Folder.id)
    ).all()
    return jsonify({"items": [{"id": f.id, "name": f.name, "parent_id": f.parent_id} for f in folders]})
