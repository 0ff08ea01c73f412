"""Sign-in through OpenID Connect providers (Google, Microsoft, any OIDC issuer)."""

from flask import Blueprint

bp = Blueprint("sso", __name__)

from portal.sso import routes  # noqa: E402,F401
