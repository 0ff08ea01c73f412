"""Personal data requests: a member's data export and the pseudonymisation of a departed member."""

from flask import Blueprint

bp = Blueprint("privacy", __name__)

from portal.privacy import routes  # noqa: E402,F401
