"""Wiring of the API blueprint into the app: bearer hook and error handlers."""

from __future__ import annotations

from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from portal.api import auth, bp
from portal.api.files import handle_document_error
from portal.api.problems import ApiProblem, handle_api_problem, handle_http_exception
from portal.documents.errors import DocumentError

bp.before_request(auth.authenticate)
bp.register_error_handler(ApiProblem, handle_api_problem)
bp.register_error_handler(DocumentError, handle_document_error)
bp.register_error_handler(HTTPException, handle_http_exception)


def register(state: BlueprintSetupState) -> None:
    auth.init_app(state.app)
