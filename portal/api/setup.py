"""Wiring of the API blueprint into the app: bearer hook and error handlers."""

from __future__ import annotations

from flask import current_app
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from portal.api import auth, bp
from portal.api.files import handle_document_error
from portal.api.inputs import MAX_BODY
from portal.api.problems import ApiProblem, handle_api_problem, handle_http_exception
from portal.documents.errors import DocumentError
from portal.extensions import limiter
from portal.web.bodies import cap_blueprint

# One budget for every API call of a member (or of an address when anonymous), shared
# across routes; routes with their own limit add it (override_defaults=False), except
# /auth/token, whose stricter per-address limit replaces it.
limiter.shared_limit(
    lambda: current_app.config.get("API_RATE_LIMIT", "600/minute"), scope="api-v1", key_func=auth.rate_limit_key
)(bp)

cap_blueprint(bp, MAX_BODY)
bp.before_request(auth.authenticate)
bp.register_error_handler(ApiProblem, handle_api_problem)
bp.register_error_handler(DocumentError, handle_document_error)
bp.register_error_handler(HTTPException, handle_http_exception)


def register(state: BlueprintSetupState) -> None:
    auth.init_app(state.app)
