"""Coffre: a secure document portal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.config import build_config
from portal.extensions import babel, csrf, db, htmx, limiter, login_manager, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def select_locale() -> str | None:
    """The user's saved language, else the language cookie, else French."""
    from flask import current_app, has_request_context

    if not has_request_context():
        return None  # jobs and CLI: Babel falls back to the default locale
    languages = current_app.config["LANGUAGES"]
    if current_user and current_user.is_authenticated and current_user.locale in languages:
        return current_user.locale
    cookie = request.cookies.get("coffre_lang")
    if cookie in languages:
        return cookie
    if current_user and current_user.is_authenticated:
        # The organisation's default language, for members who chose none.
        default = current_user.organization.default_locale
        if default in languages:
            return default
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the portal. ``config`` overrides the environment (tests use it)."""
    instance_path = os.environ.get("COFFRE_INSTANCE_DIR") or str(PROJECT_ROOT / "instance")
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)
    app.config.from_mapping(build_config(app.instance_path, config))

    if app.config["COFFRE_TRUSTED_PROXIES"]:
        hops = app.config["COFFRE_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    _init_extensions(app)
    from portal.web import bodies

    bodies.init_request_class(app)
    _import_models()
    _register_blueprints(app)
    _init_templates(app)

    from portal import cli, logformat, scheduler
    from portal.security import headers
    from portal.web import errors

    logformat.init_app(app)
    from portal.security import shared_limits

    shared_limits.init_app(app)

    errors.init_app(app)
    headers.init_app(app)
    cli.init_app(app)
    scheduler.init_app(app)
    return app


def _init_extensions(app: Flask) -> None:
    from portal import database

    database.init_app(app)  # first before_request hook: runs before the user is loaded
    from portal.web import bodies

    bodies.init_app(app)  # an oversized body is refused before CSRF, rate limits and the user
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    htmx.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(Path(__file__).parent / "translations"),
    )
    limiter.init_app(app)
    login_manager.init_app(app)

    from portal.auth import sessions

    sessions.init_app(app)


def _import_models() -> None:
    """Every model must be known to the metadata, for migrations and relationships."""
    import portal.api.models
    import portal.audit.models
    import portal.auth.models
    import portal.backups.models
    import portal.billing.models
    import portal.compliance.models
    import portal.crypto.models
    import portal.dashboard.models
    import portal.documents.models
    import portal.organizations.models
    import portal.scheduler
    import portal.sso.models
    import portal.storage.models  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from portal.api import bp as api_bp
    from portal.api import tokens_bp as api_tokens_bp
    from portal.audit import bp as audit_bp
    from portal.auth import bp as auth_bp
    from portal.backups import bp as backups_bp
    from portal.billing import bp as billing_bp
    from portal.compliance import bp as compliance_bp
    from portal.dashboard import bp as dashboard_bp
    from portal.documents import bp as documents_bp
    from portal.main import bp as main_bp
    from portal.organizations.routes import bp as organizations_bp
    from portal.privacy import bp as privacy_bp
    from portal.profile import bp as profile_bp
    from portal.search import bp as search_bp
    from portal.sso import bp as sso_bp
    from portal.users import bp as users_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(profile_bp, url_prefix="/me")
    app.register_blueprint(users_bp, url_prefix="/users")
    app.register_blueprint(audit_bp)
    app.register_blueprint(documents_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(billing_bp)
    app.register_blueprint(backups_bp)
    app.register_blueprint(compliance_bp)
    app.register_blueprint(api_tokens_bp, url_prefix="/me/jetons")
    app.register_blueprint(sso_bp)
    app.register_blueprint(privacy_bp)
    app.register_blueprint(organizations_bp)
    app.register_blueprint(search_bp)
    from portal.sso import providers as sso_providers

    sso_providers.init_app(app)
    app.context_processor(sso_providers.template_context)
    # The API authenticates with bearer tokens and ignores cookies, so CSRF does not apply.
    csrf.exempt(api_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    if app.config.get("BENCH_ROUTES"):
        from portal.documents import bench_routes

        bench_routes.init_app(app)


def _init_templates(app: Flask) -> None:
    from flask_babel import get_locale

    from portal.security.permissions import Permission, has_permission
    from portal.web.htmx import pop_undo
    from portal.web.navigation import nav_items

    @app.context_processor
    def inject_globals() -> dict[str, Any]:
        return {
            "Permission": Permission,
            "can": lambda permission: has_permission(current_user, permission),
            # Babel's choice, resolved once per request (select_locale reads the signed-in user,
            # which a commit has expired by the time most answers are rendered).
            "current_locale": str(get_locale() or app.config["BABEL_DEFAULT_LOCALE"]),
            "languages": app.config["LANGUAGES"],
            "nav_items": nav_items,
            "pop_undo": pop_undo,
            "config_view_functions": app.view_functions,
        }
