"""Request bodies are held to their limit at the edge, with or without Content-Length.

Werkzeug enforces ``max_content_length`` on a body without Content-Length (chunked, which
the server decodes and flags with ``wsgi.input_terminated``) by wrapping it in a
``LimitedStream``, whose ``readall()`` stops at the limit without looking further: a form or
JSON body one byte too long was silently cut to the limit and processed. Its ``read`` at
the limit refuses even when the body ends exactly there, so a streamed upload of exactly
its limit was refused. Here:

- every request's stream is ``_ExactLimit``: past the limit is a 413, the limit itself is a
  whole body;
- before any other hook (CSRF, rate limits, the signed-in user) and before the view, a
  declared Content-Length over the limit is a 413, and a body without one is read against
  the limit (it is at most MAX_CONTENT_LENGTH, 1 MiB, and is kept for the form parser);
- views that stream their own body (uploads) are marked ``@streams_body``: they raise the
  limit themselves before reading, and ``_ExactLimit`` holds them to it on every read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, TypeVar

from flask import Blueprint, Flask, current_app, request
from flask import Request as FlaskRequest
from flask_babel import gettext as _
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

View = TypeVar("View", bound=Callable[..., Any])


def too_large(limit: int) -> RequestEntityTooLarge:
    error = RequestEntityTooLarge()
    error.coffre_detail = _(  # type: ignore[attr-defined]
        "Le contenu envoyé dépasse la taille autorisée (%(size)d Kio au plus).", size=limit // 1024
    )
    return error


class _ExactLimit(LimitedStream):
    """A body the server frames itself (chunked, or gunicorn's Content-Length reader), read
    at most up to ``limit``: one byte more is a 413, exactly ``limit`` is a whole body."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._ended = False

    def on_exhausted(self) -> None:
        # At the limit, only the next byte tells a body that ends here from a longer one.
        if self._ended:
            return
        try:
            more = self._stream.read(1)
        except (OSError, ValueError) as error:
            raise ClientDisconnected() from error  # as LimitedStream does for any failed read
        if more:
            raise too_large(self.limit)
        self._ended = True

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


class _ExactLimitRequest(FlaskRequest):
    @cached_property
    def stream(self) -> IO[bytes]:  # type: ignore[override]
        limit = self.max_content_length
        if self.shallow or limit is None or "wsgi.input_terminated" not in self.environ:
            return get_input_stream(self.environ, max_content_length=limit)
        length = self.content_length
        if length is not None and length > limit:
            raise too_large(limit)
        return _ExactLimit(self.environ["wsgi.input"], limit)


def streams_body(view: View) -> View:
    """Mark a view that reads its body as a stream and sets its own (larger) limit first."""
    view.__coffre_streams_body__ = True  # type: ignore[attr-defined]
    return view


def cap_blueprint(blueprint: Blueprint, limit: int) -> None:
    """Hold every body sent to ``blueprint`` to ``limit``, whatever the app-wide limit."""
    blueprint.coffre_body_cap = limit  # type: ignore[attr-defined]


def _hold_body_to_its_limit() -> None:
    app = current_app
    view = app.view_functions.get(request.endpoint or "")
    if getattr(view, "__coffre_streams_body__", False):
        return
    blueprint = app.blueprints.get(request.blueprint or "")
    cap = getattr(blueprint, "coffre_body_cap", None)
    if cap is not None:
        configured = request.max_content_length
        request.max_content_length = cap if configured is None else min(configured, cap)
    limit = request.max_content_length
    if limit is None:
        return
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large(limit)
        return
    if "wsgi.input_terminated" in request.environ:
        # Kept for the form and JSON parsers, which read it from the cache.
        request.get_data(cache=True)


def init_app(app: Flask) -> None:
    """Call before any extension registers its own ``before_request`` hook."""
    app.before_request(_hold_body_to_its_limit)


def init_request_class(app: Flask) -> None:
    """Call after the extensions: htmx-flask replaces the request class with its own."""
    app.request_class = type("Request", (_ExactLimitRequest, app.request_class), {})
