"""The activity journal (journal_activite): every action, recorded in its own transaction."""

from flask import Blueprint

bp = Blueprint("audit", __name__)

from portal.audit import jobs, routes  # noqa: E402,F401
