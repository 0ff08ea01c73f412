"""The one place that decides between a full page and an HTMX fragment."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from flask import Response, make_response, render_template, request, session


def is_htmx() -> bool:
    return bool(getattr(request, "htmx", False))


def wants_fragment() -> bool:
    """True for an HTMX request that swaps part of a page.

    Boosted navigation and history restores replace the whole body, so they need the
    full page even though they carry ``HX-Request``.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render_page_or_fragment(page: str, fragment: str, status: int = 200, **context: Any) -> Response:
    template = fragment if wants_fragment() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def hx_redirect(location: str) -> Response:
    """Send an HTMX caller to another page as a full navigation."""
    response = make_response("", 204)
    response.headers["HX-Redirect"] = location
    return response


def with_toast(response: Response, message: str, undo: dict | None = None) -> Response:
    """Ask static/js/app.js to show ``message`` as a toast (``undo``: the form it offers)."""
    payload: dict[str, Any] = {"message": message}
    if undo:
        payload["undo"] = undo
    response.headers["HX-Trigger"] = json.dumps({"coffre:toast": payload})
    return response


UNDO_KEY = "_coffre_undo"


def flash_undo(undo: dict) -> None:
    """The undo form of the next page's toast, for an action whose answer is a redirect (the
    flashed message becomes the toast; static/js/app.js reads this from the flash line)."""
    session[UNDO_KEY] = undo


def pop_undo() -> str | None:
    """The pending undo as JSON for ``_flashes.html``, once."""
    undo = session.pop(UNDO_KEY, None)
    return json.dumps(undo) if undo else None


def retarget(response: Response, selector: str, swap: str = "outerHTML") -> Response:
    """Swap the answer into ``selector`` instead of the requesting element's target (a dialog's
    form whose success replaces the list behind it)."""
    response.headers["HX-Retarget"] = selector
    response.headers["HX-Reswap"] = swap
    return response


def redirect_or_hx(location: str, code: int = 303) -> Response:
    from flask import redirect

    if is_htmx():
        return hx_redirect(location)
    return redirect(location, code=code)


def safe_next(target: str | None, fallback: str) -> str:
    """A same-origin relative path, or ``fallback``: never an open redirect."""
    if not target:
        return fallback
    target = target.strip()
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return fallback
    return target
