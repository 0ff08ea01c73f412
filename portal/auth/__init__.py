"""Accounts: registration, login, two-factor authentication, sessions."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from portal.auth import jobs, routes  # noqa: E402,F401
