"""Backups (sauvegardes): content-addressed copies of an organisation's ciphertext and metadata."""

from flask import Blueprint

bp = Blueprint("backups", __name__)

from portal.backups import jobs, routes, shreds  # noqa: E402,F401
