"""The desktop JSON API (/api/v1): bearer tokens, no cookies, problem+json errors."""

from flask import Blueprint

bp = Blueprint("api", __name__)
# Token management pages for signed-in members (/me/jetons): HTML, cookie session, CSRF.
tokens_bp = Blueprint("api_tokens", __name__)

from portal.api import routes  # noqa: E402,F401
