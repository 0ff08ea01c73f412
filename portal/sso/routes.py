from __future__ import annotations

from authlib.common.errors import AuthlibBaseError
from flask import abort, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from requests import RequestException
from wtforms.fields.choices import SelectChoice

from portal.auth import services as auth_services
from portal.auth.forms import EmptyForm
from portal.auth.models import TwoFactorMethod
from portal.auth.reauth import mark_reauthenticated
from portal.auth.routes import NEXT_KEY, _client, _send_email_code
from portal.auth.sessions import current_session, pending_binding, start_pending, start_session
from portal.extensions import db, limiter
from portal.security.permissions import Permission, public, requires
from portal.sso import bp, providers, services
from portal.sso.forms import PolicyForm, split_domains
from portal.sso.hooks import LINK_KEY
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx, render_page_or_fragment, safe_next

REAUTH_KEY = "sso_reauth_next"

# What the visitor reads; the journal keeps the precise reason code.
MESSAGES = {
    "bad_state": _l(
        "Cette connexion ne vient pas de ce navigateur ou a expiré. Recommencez depuis la page de connexion."
    ),
    "provider_error": _l("Le fournisseur d'identité a refusé la connexion."),
    "code_refused": _l("Le fournisseur d'identité a refusé le code de connexion (déjà utilisé ou expiré)."),
    "provider_unavailable": _l("Le fournisseur d'identité ne répond pas. Réessayez dans un instant."),
    "expired": _l("La preuve d'identité a expiré. Recommencez depuis la page de connexion."),
    "wrong_audience": _l("La preuve d'identité n'était pas destinée à Coffre."),
    "unknown_domain": _l("Aucune organisation n'accepte les connexions de ce domaine."),
    "ambiguous_domain": _l(
        "Plusieurs organisations acceptent ce domaine : demandez à votre administrateur de vous inviter."
    ),
    "jit_disabled": _l("Votre organisation ne crée pas de compte à la première connexion : demandez une invitation."),
    "email_unverified": _l("Le fournisseur ne garantit pas cette adresse e-mail."),
    "provider_not_allowed": _l("Votre organisation n'autorise pas ce fournisseur d'identité."),
    "inactive": _l("Ce compte est désactivé."),
    "reauth_mismatch": _l("Cette identité ne confirme pas le compte connecté."),
}
DEFAULT_MESSAGE = _l("La preuve d'identité a été refusée. Recommencez depuis la page de connexion.")
POLICY_REASONS = {
    "unknown_domain",
    "ambiguous_domain",
    "jit_disabled",
    "email_unverified",
    "provider_not_allowed",
    "inactive",
}


def _provider_or_404(name: str) -> providers.Provider:
    provider = providers.get(name)
    if provider is None:
        abort(404)
    return provider


def _refused(reason: str):
    db.session.commit()
    return render_error(403 if reason in POLICY_REASONS else 400, str(MESSAGES.get(reason, DEFAULT_MESSAGE)))


@bp.route("/auth/sso/<name>/start", methods=["POST"])
@public
@limiter.limit("20/minute")
def start(name: str):
    # A POST from Coffre's own login page (CSRF-checked): a cross-site link cannot start a
    # flow that would end with the visitor signed in to someone else's account.
    provider = _provider_or_404(name)
    if providers.load_metadata(provider) is None:
        return render_error(503, str(MESSAGES["provider_unavailable"]))
    if current_user.is_authenticated:
        # Re-authentication of a member who has no password nor second factor to offer.
        session[REAUTH_KEY] = safe_next(request.form.get("next"), url_for("main.index"))
    else:
        session.pop(REAUTH_KEY, None)
    return providers.client(provider).authorize_redirect(url_for("sso.callback", name=name, _external=True))


@bp.route("/auth/sso/<name>/callback")
@public
@limiter.limit("20/minute")
def callback(name: str):
    provider = _provider_or_404(name)
    actor = current_actor()
    app_client = providers.client(provider)
    state = request.args.get("state")
    state_data = app_client.framework.get_state_data(session, state) if isinstance(state, str) and state else None
    if state_data is not None:
        # One use per state, whatever happens next.
        app_client.framework.clear_state_data(session, state)
    if request.args.get("error"):
        services.refuse("provider_error", provider, actor)
        return _refused("provider_error")
    if not state_data or not isinstance(state_data.get("code_verifier"), str):
        services.refuse("bad_state", provider, actor)
        return _refused("bad_state")
    issuer_param = request.args.get("iss")
    if issuer_param is not None and not providers.issuer_matches(provider, issuer_param, {"tid": _tid(issuer_param)}):
        # RFC 9207: the response names the issuer that produced it; another one is a mix-up.
        services.refuse("mix_up", provider, actor)
        return _refused("mix_up")
    code = request.args.get("code")
    if not isinstance(code, str) or not code:
        services.refuse("bad_state", provider, actor)
        return _refused("bad_state")
    try:
        token = app_client.fetch_access_token(
            redirect_uri=state_data.get("redirect_uri"), code=code, code_verifier=state_data["code_verifier"]
        )
    except AuthlibBaseError:
        services.refuse("code_refused", provider, actor)
        return _refused("code_refused")
    except (RequestException, ValueError):
        services.refuse("provider_unavailable", provider, actor)
        return _refused("provider_unavailable")
    id_token = token.get("id_token") if isinstance(token, dict) else None
    try:
        claims = providers.verify_id_token(provider, id_token, state_data.get("nonce"))
    except providers.IdTokenError as error:
        # Unverified claims only choose which organisation's journal hears of the failure.
        services.refuse(error.reason, provider, actor, claims=providers.unverified_claims(id_token))
        return _refused(error.reason)
    except RequestException:
        services.refuse("provider_unavailable", provider, actor)
        return _refused("provider_unavailable")

    outcome = services.resolve(provider, claims, actor)
    if outcome.kind == "refused":
        return _refused(outcome.reason or "refused")
    user = outcome.user
    reauth_next = session.pop(REAUTH_KEY, None)
    if current_user.is_authenticated and reauth_next is not None:
        return _reauthenticate(user, outcome, provider, claims, reauth_next)
    if outcome.kind == "link_required":
        session[LINK_KEY] = services.pending_link(provider, claims, user)
        db.session.commit()
        flash(
            _(
                "Un compte Coffre existe déjà pour cette adresse. Connectez-vous avec votre mot de passe "
                "et votre second facteur pour y lier votre identité %(provider)s.",
                provider=provider.label,
            ),
            "info",
        )
        return redirect(url_for("auth.login"))

    if user.has_two_factor and not outcome.provider_mfa:
        # Coffre's own second factor still applies unless the organisation trusts the
        # provider's MFA and the token says it happened.
        start_pending(user, remember=False, **_client())
        code = None
        if user.two_factor_method == TwoFactorMethod.EMAIL:
            code = auth_services.issue_email_code(user, "login", pending_binding())
        session[NEXT_KEY] = url_for("main.index")
        services.record_login(user, provider, claims, actor, second_factor_due=True)
        db.session.commit()
        if code:
            _send_email_code(user, code)
        return redirect(url_for("auth.two_factor_verify"))
    auth_services.complete_login(user, actor, f"sso:{provider.name}")
    services.record_login(user, provider, claims, actor, second_factor_due=False)
    start_session(user, remember=False, **_client())
    db.session.commit()
    return redirect(url_for("main.index"))


def _reauthenticate(user, outcome, provider, claims, next_url: str):
    row = current_session()
    if outcome.kind != "login" or user.id != current_user.id or row is None or not services.may_reauth_by_sso(user):
        # Nothing resolving the identity did (a just-in-time member) may outlive the refusal.
        db.session.rollback()
        services.refuse("reauth_mismatch", provider, current_actor(), claims=claims, user=current_user)
        return _refused("reauth_mismatch")
    mark_reauthenticated(row)
    services.record_login(user, provider, claims, current_actor(), second_factor_due=False, outcome="reauthenticated")
    db.session.commit()
    return redirect(next_url)


def _tid(issuer: str) -> str | None:
    parts = issuer.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


@bp.route("/me/sso/<int:identity_id>/unlink", methods=["POST"])
@requires(Permission.ACCOUNT)
def unlink(identity_id: int):
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        found = services.unlink(current_user, identity_id, current_actor())
    except services.LastWayInError:
        flash(_("C'est votre seul moyen de connexion : définissez d'abord un mot de passe."), "error")
        return redirect_or_hx(url_for("profile.index"))
    if not found:
        abort(404)
    db.session.commit()
    flash(_("Identité déliée."), "success")
    return redirect_or_hx(url_for("profile.index"))


def _policy_form(policy) -> PolicyForm:
    data = {}
    if policy is not None:
        data = {
            "allowed_providers": sorted(policy.providers),
            "allowed_domains": "\n".join(sorted(policy.domains)),
            "jit_enabled": policy.jit_enabled,
            "default_role": policy.default_role,
            "sso_required": policy.sso_required,
            "trust_provider_mfa": policy.trust_provider_mfa,
        }
    form = PolicyForm(formdata=None, data=data) if request.method == "GET" else PolicyForm()
    form.allowed_providers.choices = [SelectChoice(p.name, p.label) for p in providers.configured()]
    return form


@bp.route("/organisation/sso", methods=["GET", "POST"])
@requires(Permission.ORGANIZATION_MANAGE)
def policy():
    org_id = current_user.organization_id
    current = services.policy_for(org_id)
    form = _policy_form(current)
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            services.save_policy(
                org_id,
                current_actor(),
                allowed_providers=form.allowed_providers.data or [],
                allowed_domains=split_domains(form.allowed_domains.data),
                jit_enabled=form.jit_enabled.data,
                default_role=form.default_role.data,
                sso_required=form.sso_required.data,
                trust_provider_mfa=form.trust_provider_mfa.data,
            )
            db.session.commit()
            flash(_("Politique SSO enregistrée."), "success")
            return redirect_or_hx(url_for("sso.policy"))
        status = 422
    return render_page_or_fragment(
        "sso/policy.html", "sso/_policy_form.html", status=status, form=form, providers=providers.configured()
    )
