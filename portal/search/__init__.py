"""Organisation-wide search over the live files of every armoire (page and API)."""

from flask import Blueprint

bp = Blueprint("search", __name__)

from portal.search import api, routes  # noqa: E402,F401
