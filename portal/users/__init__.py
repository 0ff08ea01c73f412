"""Members of an organisation: invitations, roles, deactivation (admin)."""

from flask import Blueprint

bp = Blueprint("users", __name__)

from portal.users import routes  # noqa: E402,F401
