"""Home page, language switch and other pages that belong to no feature."""

from flask import Blueprint

bp = Blueprint("main", __name__)

from portal.main import routes  # noqa: E402,F401
