"""The signed-in member's own profile (/me): language, password, 2FA, sessions, tokens."""

from flask import Blueprint

bp = Blueprint("profile", __name__)

from portal.profile import routes  # noqa: E402,F401
