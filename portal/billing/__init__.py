"""Subscriptions and payments: plans, FeexPay settlement by re-query, invoices."""

from flask import Blueprint

bp = Blueprint("billing", __name__)

from portal.billing import api, jobs, plan_routes, routes  # noqa: E402,F401
