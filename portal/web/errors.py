"""Error responses: a page in the layout, a fragment for HTMX, problem+json under /api/."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from portal.extensions import db
from portal.web.htmx import render_page_or_fragment

ERROR_TEXTS = {
    400: (_l("Requête invalide"), _l("La requête n'a pas pu être comprise. Vérifiez le formulaire et réessayez.")),
    401: (_l("Connexion requise"), _l("Connectez-vous pour continuer.")),
    403: (
        _l("Accès refusé"),
        _l("Votre rôle ne permet pas cette action. Demandez à un administrateur si vous pensez que c'est une erreur."),
    ),
    404: (_l("Page introuvable"), _l("Cette page n'existe pas ou n'est pas accessible depuis votre organisation.")),
    405: (_l("Méthode non autorisée"), _l("Cette action n'est pas possible de cette manière.")),
    409: (_l("Conflit"), _l("L'action entre en conflit avec l'état actuel. Rechargez la page et réessayez.")),
    413: (
        _l("Fichier trop volumineux"),
        _l("Le contenu envoyé dépasse la taille autorisée ou le quota de votre organisation."),
    ),
    416: (_l("Plage non satisfaisable"), _l("La partie demandée du fichier n'existe pas.")),
    415: (_l("Type non pris en charge"), _l("Ce type de contenu n'est pas accepté.")),
    422: (_l("Données invalides"), _l("Certaines données sont invalides. Corrigez-les et réessayez.")),
    423: (_l("Verrouillé"), _l("Cet élément est verrouillé et ne peut pas être modifié.")),
    429: (
        _l("Trop de tentatives"),
        _l("Vous avez fait trop de tentatives. Patientez quelques minutes avant de réessayer."),
    ),
    503: (
        _l("Service indisponible"),
        _l("Le serveur ne peut pas traiter cette demande pour le moment. Réessayez plus tard."),
    ),
    507: (_l("Stockage plein"), _l("L'espace de stockage du serveur est plein. Prévenez l'administrateur.")),
    500: (
        _l("Erreur interne"),
        _l("Une erreur inattendue s'est produite. Elle a été enregistrée ; réessayez plus tard."),
    ),
}


# Stable problem types (RFC 9457) by status; the API adds more precise kinds of its own.
PROBLEM_TYPES: dict[int, str] = {
    400: "/problems/bad-request",
    401: "/problems/unauthorized",
    403: "/problems/forbidden",
    404: "/problems/not-found",
    405: "/problems/method-not-allowed",
    409: "/problems/conflict",
    413: "/problems/too-large",
    415: "/problems/unsupported-media-type",
    422: "/problems/validation",
    423: "/problems/locked",
    429: "/problems/rate-limited",
    500: "/problems/internal",
    503: "/problems/unavailable",
    507: "/problems/insufficient-storage",
}


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def problem_response(status: int, title: str, detail: str, type_: str | None = None, **extra) -> Response:
    """An RFC 9457 problem document."""
    body = {
        "type": type_ or PROBLEM_TYPES.get(status, "about:blank"),
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


# What a person reads as the heading of an error page or fragment: plain words, no status
# code or protocol jargon ("409 · Conflit"); API problem titles keep ERROR_TEXTS.
PLAIN_HEADINGS = {
    400: _l("Cette demande n'a pas abouti"),
    401: _l("Connectez-vous pour continuer"),
    403: _l("Vous n'avez pas accès à cette action"),
    404: _l("Introuvable"),
    405: _l("Cette action n'est pas possible ainsi"),
    409: _l("Impossible pour le moment"),
    413: _l("C'est trop volumineux"),
    415: _l("Ce type de fichier n'est pas pris en charge ici"),
    416: _l("Cette partie du fichier n'existe pas"),
    422: _l("Vérifiez ce qui a été saisi"),
    423: _l("Cet élément est verrouillé"),
    429: _l("Un peu de patience"),
    503: _l("Le service est momentanément indisponible"),
    507: _l("L'espace de stockage est plein"),
    500: _l("Quelque chose s'est mal passé de notre côté"),
}


def render_error(status: int, detail: str | None = None, link: str | None = None) -> Response:
    title, default_detail = ERROR_TEXTS.get(status, ERROR_TEXTS[500])
    message = detail or str(default_detail)
    if is_api_request():
        return problem_response(status, str(title), message)
    return render_page_or_fragment(
        "errors/error.html",
        "errors/_error.html",
        status=status,
        status_code=status,
        title=title,
        heading=PLAIN_HEADINGS.get(status, title),
        detail=message,
        link=link,
    )


def _handle_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        db.session.rollback()
    detail = getattr(exc, "coffre_detail", None)
    wait = None
    if status == 429:
        from portal.web.retry import wait_of, wait_text

        wait = wait_of(exc)
        detail = wait_text(wait)
    response = render_error(status, detail)
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    if wait is not None:
        response.headers["Retry-After"] = str(wait)
    return response


def _handle_csrf(exc: CSRFError) -> Response:
    return render_error(400, str(_l("Le formulaire a expiré ou n'est pas valide. Rechargez la page et réessayez.")))


def _handle_unexpected(exc: Exception) -> Response:
    db.session.rollback()
    from flask import current_app

    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return render_error(500)


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _handle_csrf)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(InternalServerError, _handle_unexpected)
    app.register_error_handler(Exception, _handle_unexpected)
