"""Token, identity and armoire endpoints of /api/v1 (files are in ``portal.api.files``)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from flask import Response, jsonify
from flask_babel import gettext as _
from flask_login import current_user

from portal.api import bp, services
from portal.api.auth import current_token
from portal.api.inputs import Validator, json_or_form_body
from portal.api.problems import (
    INVALID_CREDENTIALS,
    SSO_REQUIRED,
    TWO_FACTOR_ENROLMENT_REQUIRED,
    TWO_FACTOR_REQUIRED,
    ApiProblem,
)
from portal.audit.context import Actor
from portal.auth import services as accounts
from portal.auth.models import TwoFactorMethod, User
from portal.documents.models import Armoire
from portal.extensions import db, limiter
from portal.security.permissions import ROLE_PERMISSIONS, Permission, Role, public, requires
from portal.security.tenancy import scoped
from portal.web.context import current_actor
from portal.web.retry import rounded, wait_text

DEFAULT_TOKEN_NAME = "Application de bureau"  # noqa: S105


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _refuse(status: int, detail: str, type_: str, **extra: Any) -> ApiProblem:
    # The journal entries written so far (failed login, 2FA failure) must survive the refusal.
    db.session.commit()
    return ApiProblem(status, detail, type_, extra=extra)


def _second_factor(user: User, code: str | None, challenge: str | None, actor: Actor) -> str:
    """The method that proved the second factor, or raise the 401 that asks for it."""
    if not code:
        extra: dict[str, Any] = {"method": user.two_factor_method}
        if user.two_factor_method == TwoFactorMethod.EMAIL:
            # The e-mailed code is bound to this challenge, which only this client has seen.
            challenge = secrets.token_urlsafe(32)
            sent = accounts.issue_email_code(user, "login", hashlib.sha256(challenge.encode()).hexdigest())
            db.session.commit()
            from portal.mail import send_template_safely

            send_template_safely(user.email, "email_code", user.locale, user=user, code=sent, minutes=10)
            extra["challenge"] = challenge
        raise _refuse(401, _("Un code de double authentification est requis."), TWO_FACTOR_REQUIRED, **extra)
    binding = hashlib.sha256(challenge.encode()).hexdigest() if challenge else None
    method = accounts.verify_second_factor(user, code, binding, actor)
    if method is None:
        accounts.record_second_factor_failure(user, actor)
        raise _refuse(401, _("Code de double authentification invalide."), TWO_FACTOR_REQUIRED)
    return method


@bp.post("/auth/token")
@public
@limiter.limit("10/minute;50/hour")
def create_token() -> tuple[Response, int]:
    check = Validator(json_or_form_body())
    email = check.string("email", required=True, max_length=254)
    password = check.string("password", required=True, max_length=1024)
    code = check.string("code", max_length=64)
    challenge = check.string("challenge", max_length=100)
    name = check.name("name", max_length=services.MAX_NAME)
    days = check.integer("expires_in_days", maximum=services.MAX_DAYS)
    check.check()
    actor = current_actor()
    try:
        user = accounts.authenticate(email, password, actor)
    except accounts.AccountLockedError as exc:
        wait = rounded(exc.retry_after)
        problem = _refuse(429, wait_text(wait), "/problems/rate-limited")
        problem.headers["Retry-After"] = str(wait)
        raise problem from None
    if user is None:
        raise _refuse(401, _("Adresse e-mail ou mot de passe incorrect."), INVALID_CREDENTIALS)
    from portal.sso import services as sso_services  # portal.sso imports the auth views

    if sso_services.password_login_refused(user, actor, "api"):
        raise _refuse(
            403,
            _("Votre organisation exige la connexion par SSO : créez un jeton depuis la page Jetons du portail."),
            SSO_REQUIRED,
        )
    actor = Actor(user.organization_id, user.id, actor.ip, actor.user_agent)
    if user.has_two_factor:
        method = _second_factor(user, code, challenge, actor)
    elif user.organization.require_2fa:
        # The API must not be a way around the organisation's 2FA rule.
        raise _refuse(
            403,
            _("Votre organisation exige la double authentification : activez-la sur le portail."),
            TWO_FACTOR_ENROLMENT_REQUIRED,
        )
    else:
        method = "password"
    accounts.complete_login(user, actor, f"api:{method}")
    token, secret = services.create_token(
        user, actor, name=name or DEFAULT_TOKEN_NAME, days=days or services.DEFAULT_DAYS
    )
    db.session.commit()
    return jsonify(token_body(token) | {"token": secret, "token_type": "Bearer"}), 201


def token_body(token) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
    }


@bp.delete("/auth/token")
@requires(Permission.ACCOUNT)
def revoke_token() -> tuple[str, int]:
    token = current_token()
    if token is None:  # authenticated some other way: there is no "current" token to revoke
        raise ApiProblem(400, _("Aucun jeton à révoquer dans cette requête."))
    services.revoke_token(token, current_actor())
    db.session.commit()
    return "", 204


@bp.get("/me")
@requires(Permission.ACCOUNT)
def me() -> Response:
    user = current_user
    permissions = sorted(str(p) for p in ROLE_PERMISSIONS.get(Role(user.role), frozenset()))
    token = current_token()
    return jsonify(
        {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "locale": user.locale,
            "two_factor": user.has_two_factor,
            "permissions": permissions,
            "organization": {"id": user.organization.id, "name": user.organization.name},
            "token": token_body(token) if token is not None else None,
        }
    )


def armoire_body(armoire: Armoire) -> dict[str, Any]:
    return {
        "id": armoire.id,
        "name": armoire.name,
        "description": armoire.description,
        "created_at": iso(armoire.created_at),
    }


@bp.get("/armoires")
@requires(Permission.DOCUMENT_READ)
def armoires() -> Response:
    rows = db.session.execute(scoped(Armoire, current_user.organization_id).order_by(Armoire.name, Armoire.id))
    return jsonify({"items": [armoire_body(a) for a in rows.scalars()]})


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    from portal.api.openapi import build_document

    return jsonify(build_document())
