"""Dashboards: organisation figures, per-member activity and the platform view.

Journal figures come from daily rollups that ``portal.audit.services.record`` keeps
up to date in the recording transaction; a view never scans the journal.
"""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from portal.dashboard import api, cli, routes, storage  # noqa: E402,F401
