"""Compliance: retention rules, legal holds, the deletion policy, disposition, certificates, reports."""

from flask import Blueprint

bp = Blueprint("compliance", __name__, url_prefix="/conformite")

from portal.compliance import api, cli, routes  # noqa: E402,F401
