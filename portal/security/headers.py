"""Security headers on every response, errors and API answers included."""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_login import current_user

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _set_headers(response: Response) -> Response:
    headers = response.headers
    # SSO buttons post to Coffre, which redirects to the provider: browsers check that
    # redirect against form-action too, so the providers' origins are added (portal.sso).
    extra = current_app.config.get("CSP_FORM_ACTION_SOURCES")
    policy = CONTENT_SECURITY_POLICY
    if extra:
        policy = policy.replace("form-action 'self'", "form-action 'self' " + " ".join(sorted(extra)))
    headers.setdefault("Content-Security-Policy", policy)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    if current_app.config["COFFRE_ENV"] == "production":
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    # Authenticated content must never sit in a shared or browser cache. ``is_anonymous`` reads
    # no column: ``is_authenticated`` (``active``) would reload a user the view's commit expired.
    if request.endpoint != "static" and (not current_user.is_anonymous or request.path.startswith("/api/")):
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    app.after_request(_set_headers)
