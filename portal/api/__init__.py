"""The desktop JSON API (/api/v1): bearer tokens, no cookies, problem+json errors."""

from flask import Blueprint

bp = Blueprint("api", __name__)
# Token management pages for signed-in members (/me/jetons): HTML, cookie session, CSRF.
tokens_bp = Blueprint("api_tokens", __name__)

from portal.api import files, folders, models, routes, token_pages, uploads  # noqa: E402,F401
from portal.api.setup import register  # noqa: E402

bp.record_once(register)
