"""Documents: armoires, folders, files, versions, encryption at rest."""

from flask import Blueprint

bp = Blueprint("documents", __name__)

from portal.documents import bulk_routes, jobs, routes, tus_routes  # noqa: E402,F401
