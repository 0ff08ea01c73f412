from __future__ import annotations

from flask import current_app, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from portal.extensions import db
from portal.main import bp, services
from portal.main.forms import LanguageForm
from portal.security.permissions import public
from portal.web.htmx import safe_next

LANGUAGE_COOKIE_AGE = 365 * 24 * 3600


@bp.route("/")
@public
def index():
    if not current_user.is_authenticated:
        return render_template("main/welcome.html")
    summary = services.home_summary(current_user.organization_id)
    return render_template("main/index.html", summary=summary)


@bp.route("/langue", methods=["POST"])
@public
def set_language():
    form = LanguageForm()
    language = form.language.data if form.validate_on_submit() else None
    target = safe_next(form.next.data or (request.referrer and _path_of(request.referrer)), url_for("main.index"))
    response = make_response(redirect(target, code=303))
    if language in current_app.config["LANGUAGES"]:
        if current_user.is_authenticated:
            services.set_user_locale(current_user, language)
            db.session.commit()
        response.set_cookie(
            "coffre_lang",
            language,
            max_age=LANGUAGE_COOKIE_AGE,
            httponly=True,
            samesite="Lax",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
        )
    return response


def _path_of(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.host:
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


@bp.route("/healthz")
@public
def healthz():
    """Liveness: the process answers (dependencies are /readyz's business)."""
    return {"status": "ok"}


@bp.route("/readyz")
@public
def readyz():
    """Readiness: 200 when every dependency answers, else 503 problem+json naming them."""
    from portal.main.health import readiness
    from portal.web.errors import problem_response

    checks = readiness()
    down = sorted(name for name, state in checks.items() if state != "ok")
    if down:
        return problem_response(503, "Service Unavailable", f"down: {', '.join(down)}", checks=checks)
    return {"status": "ready", "checks": checks}
