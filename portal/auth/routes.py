from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import TooManyRequests

from portal.auth import bp, services
from portal.auth.forms import (
    AcceptInvitationForm,
    CodeForm,
    EmailEnableForm,
    EmptyForm,
    ForgotPasswordForm,
    LoginForm,
    RegisterForm,
    ResetPasswordForm,
    TotpEnableForm,
)
from portal.auth.models import TwoFactorMethod
from portal.auth.reauth import mark_reauthenticated, requires_recent_auth
from portal.auth.sessions import (
    current_binding,
    current_session,
    end_session,
    pending_binding,
    pending_session,
    start_pending,
    start_session,
)
from portal.extensions import db, limiter
from portal.mail import absolute_url, dev_outbox_enabled, read_outbox, send_template_safely, smtp_configured
from portal.security import totp
from portal.security.permissions import Permission, _on_forbidden, has_permission, public, requires
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx, render_page_or_fragment, safe_next


def _sso_hooks():
    # portal.sso imports this module (its callback reuses the login helpers), so the
    # import waits until a request needs it.
    from portal.sso import hooks

    return hooks


NEXT_KEY = "login_next"


def too_many(seconds: int) -> TooManyRequests:
    # The error handler words the wait from this same number (portal.web.retry), so the
    # header and the sentence agree; the sentence names no account, so it reveals none.
    return TooManyRequests(retry_after=seconds)


def _client() -> dict[str, str | None]:
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string or None}


def _cookie_locale() -> str | None:
    language = request.cookies.get("coffre_lang")
    return language if language in current_app.config["LANGUAGES"] else None


def _send_email_code(user, code: str) -> bool:
    return send_template_safely(user.email, "email_code", user.locale, user=user, code=code, minutes=10)


# --- registration ----------------------------------------------------------------------


@bp.route("/register", methods=["GET", "POST"])
@public
@limiter.limit("5/minute;20/hour", methods=["POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegisterForm()
    status = 200
    if form.validate_on_submit():
        # The same answer whether or not the address has an account: a new address gets the
        # link that creates the organisation, a taken one a warning to its owner. Nobody is
        # signed in here, so a visitor can never land in somebody else's organisation.
        outcome, token = services.request_registration(
            form.organization_name.data, form.name.data, form.email.data, form.password.data, _cookie_locale()
        )
        db.session.commit()
        email = services.normalise_email(form.email.data)
        if outcome == "new":
            send_template_safely(
                email,
                "register_link",
                _cookie_locale(),
                name=form.name.data.strip(),
                link=absolute_url("auth.register_confirm", token=token),
                hours=72,
            )
        else:
            owner = services.find_user_by_email(email)
            send_template_safely(
                owner.email,
                "register_existing",
                owner.locale,
                user=owner,
                login_link=absolute_url("auth.login"),
                reset_link=absolute_url("auth.password_forgot"),
            )
        # Without SMTP (development only) the visitor could never read the link: show the
        # message here. It tells whether the address has an account, which production, where
        # SMTP is mandatory, never does.
        sent = read_outbox(1, to=email) if dev_outbox_enabled() else []
        return render_page_or_fragment(
            "auth/register_sent.html", "auth/_register_sent.html", email=email, dev_message=sent[0] if sent else None
        )
    elif form.is_submitted():
        status = 422
    return render_page_or_fragment("auth/register.html", "auth/_register_form.html", status=status, form=form)


@bp.route("/register/<token>", methods=["GET", "POST"])
@public
@limiter.limit("5/minute;20/hour", methods=["POST"])
def register_confirm(token: str):
    invalid = _("Ce lien d'inscription n'est pas valide, a déjà servi ou a expiré.")
    form = EmptyForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            user = services.complete_registration(token, current_actor())
            if user is not None:
                services.complete_login(user, current_actor(), "registration")
                start_session(user, **_client())
                db.session.commit()
        except IntegrityError:  # a concurrent registration of the same address won
            db.session.rollback()
            user = None
        if user is None:
            db.session.rollback()
            return render_error(404, invalid)
        flash(_("Bienvenue ! Votre espace %(org)s est prêt.", org=user.organization.name), "success")
        return redirect_or_hx(url_for("main.index"))
    if services.peek_registration(token) is None:
        return render_error(404, invalid)
    return render_page_or_fragment("auth/register_confirm.html", "auth/register_confirm.html", form=form)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@public
def confirm_email(token: str):
    form = EmptyForm()
    if request.method == "POST" and form.validate_on_submit():
        user = services.confirm_email(token, current_actor())
        if user is None:
            return render_error(404, _("Ce lien de confirmation n'est pas valide ou a expiré."))
        db.session.commit()
        flash(_("Votre adresse e-mail est confirmée."), "success")
        return redirect_or_hx(url_for("main.index"))
    if services.peek_token(token, "email_confirm") is None:
        return render_error(404, _("Ce lien de confirmation n'est pas valide ou a expiré."))
    return render_page_or_fragment("auth/confirm.html", "auth/confirm.html", form=form)


# --- login, second step, logout ----------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit("10/minute;50/hour", methods=["POST"])
def login():
    next_url = safe_next(request.args.get("next"), url_for("main.index"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = services.authenticate(form.email.data, form.password.data, current_actor())
        except services.AccountLockedError as locked:
            db.session.commit()
            raise too_many(locked.retry_after) from None
        if user is None:
            db.session.commit()
            form.password.errors.append(_("Adresse e-mail ou mot de passe incorrect."))
            status = 422
        elif _sso_hooks().password_login_refused(user, current_actor(), "web"):
            db.session.commit()
            form.password.errors.append(
                _("Votre organisation exige la connexion par SSO : utilisez le bouton de votre fournisseur.")
            )
            status = 403
        elif user.has_two_factor:
            link = _sso_hooks().take_pending_link()
            start_pending(user, remember=form.remember.data, **_client())
            _sso_hooks().keep_pending_link(link)
            code = None
            if user.two_factor_method == TwoFactorMethod.EMAIL:
                code = services.issue_email_code(user, "login", pending_binding())
            session[NEXT_KEY] = next_url
            db.session.commit()
            if code:
                _send_email_code(user, code)
            return redirect_or_hx(url_for("auth.two_factor_verify"))
        else:
            services.complete_login(user, current_actor(), "password")
            link = _sso_hooks().take_pending_link()
            start_session(user, remember=form.remember.data, **_client())
            _sso_hooks().complete_pending_link(user, link, current_actor())
            db.session.commit()
            return redirect_or_hx(next_url)
    elif form.is_submitted():
        status = 422
    return render_page_or_fragment("auth/login.html", "auth/_login_form.html", status=status, form=form)


@bp.route("/2fa/verify", methods=["GET", "POST"])
@public
@limiter.limit("10/minute;60/hour", methods=["POST"])
def two_factor_verify():
    row = pending_session()
    if row is None:
        flash(_("Votre connexion a expiré. Saisissez à nouveau votre mot de passe."), "warning")
        return redirect_or_hx(url_for("auth.login"))
    user = row.user
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        actor = current_actor()
        try:
            services.check_lock(user, services.clock.now(), actor.ip)
        except services.AccountLockedError as locked:
            raise too_many(locked.retry_after) from None
        method = services.verify_second_factor(user, form.code.data, pending_binding(), actor)
        if method:
            services.complete_login(user, actor, method)
            row.revoked_at = services.clock.now()
            next_url = safe_next(session.get(NEXT_KEY), url_for("main.index"))
            link = _sso_hooks().take_pending_link()
            start_session(user, remember=row.remember, **_client())
            _sso_hooks().complete_pending_link(user, link, actor)
            db.session.commit()
            if method == "recovery":
                flash(_("Code de secours utilisé : il ne fonctionnera plus."), "warning")
            return redirect_or_hx(next_url)
        services.record_second_factor_failure(user, actor)
        db.session.commit()
        form.code.errors.append(_("Code incorrect, déjà utilisé ou expiré."))
        status = 422
    elif form.is_submitted():
        status = 422
    return render_page_or_fragment(
        "auth/two_factor_verify.html", "auth/_two_factor_verify_form.html", status=status, form=form, user=user
    )


@bp.route("/2fa/verify/email", methods=["POST"])
@public
@limiter.limit("3/minute;10/hour")
def two_factor_send_login_code():
    row = pending_session()
    form = EmptyForm()
    if row is None or not form.validate_on_submit():
        return redirect_or_hx(url_for("auth.login"))
    user = row.user
    if user.two_factor_method != TwoFactorMethod.EMAIL:
        abort(409)
    code = services.issue_email_code(user, "login", pending_binding())
    db.session.commit()
    _send_email_code(user, code)
    flash(_("Un nouveau code a été envoyé. Les codes précédents ne fonctionnent plus."), "success")
    return redirect_or_hx(url_for("auth.two_factor_verify"))


@bp.route("/logout", methods=["POST"])
@requires(Permission.ACCOUNT)
def logout():
    form = EmptyForm()
    if form.validate_on_submit():
        row = current_session()
        services.logout(current_user, row.id if row else None, current_actor())
        db.session.commit()
        end_session()
    response = redirect_or_hx(url_for("auth.login"))
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


# --- enabling two-factor authentication --------------------------------------------------


def _enable_context(user, totp_form=None, email_form=None, email_sent=False, dev_code=None):
    secret = services.pending_totp_secret(user)
    if secret is None:
        secret = services.begin_totp_enrolment(user)
        db.session.commit()
    uri = totp.provisioning_uri(secret, user.email)
    return {
        "secret": secret,
        "qr_svg": totp.qr_svg(uri),
        "totp_form": totp_form or TotpEnableForm(formdata=None),
        "email_form": email_form or EmailEnableForm(formdata=None),
        "send_form": EmptyForm(formdata=None),
        "email_sent": email_sent,
        "dev_code": dev_code,
        "required": user.organization.require_2fa,
    }


@bp.route("/2fa/enable", methods=["GET", "POST"])
@requires(Permission.ACCOUNT)
@requires_recent_auth  # binding a new factor needs a fresh proof (ASVS 7.5.1); right after login it is
@limiter.limit("10/minute", methods=["POST"])
def two_factor_enable():
    user = current_user._get_current_object()
    if user.has_two_factor:
        return render_page_or_fragment("auth/two_factor_active.html", "auth/two_factor_active.html")
    status = 200
    totp_form = email_form = None
    if request.method == "POST":
        actor = current_actor()
        method = request.form.get("method")
        codes = None
        if method == "email":
            email_form = EmailEnableForm()
            if email_form.validate_on_submit():
                codes = services.confirm_email_enrolment(user, current_binding(), email_form.code.data, actor)
                if codes is None:
                    email_form.code.errors.append(_("Code incorrect, déjà utilisé ou expiré."))
        else:
            totp_form = TotpEnableForm()
            if totp_form.validate_on_submit():
                codes = services.confirm_totp_enrolment(user, totp_form.code.data, actor)
                if codes is None:
                    totp_form.code.errors.append(_("Code incorrect. Vérifiez l'heure de votre téléphone et réessayez."))
        if codes is not None:
            db.session.commit()
            send_template_safely(user.email, "two_factor_changed", user.locale, user=user, enabled=True)
            return render_page_or_fragment(
                "auth/recovery_codes.html", "auth/_recovery_codes.html", codes=codes, first_time=True
            )
        db.session.commit()  # keeps attempt counters on e-mail codes
        status = 422
    return render_page_or_fragment(
        "auth/two_factor_enable.html",
        "auth/two_factor_enable.html",
        status=status,
        **_enable_context(user, totp_form, email_form),
    )


@bp.route("/2fa/enable/email", methods=["POST"])
@requires(Permission.ACCOUNT)
@requires_recent_auth
@limiter.limit("3/minute;10/hour")
def two_factor_enable_send_code():
    user = current_user._get_current_object()
    form = EmptyForm()
    if user.has_two_factor or not form.validate_on_submit():
        return redirect_or_hx(url_for("auth.two_factor_enable"))
    code = services.issue_email_code(user, "enroll", current_binding())
    db.session.commit()
    sent = _send_email_code(user, code)
    if not sent:
        flash(_("L'e-mail n'a pas pu être envoyé. Réessayez plus tard ou choisissez l'application."), "error")
    # Without SMTP nobody could ever read this code: show it to the member it is for, on the
    # page of the session it is bound to (development only: production requires SMTP).
    dev_code = code if sent and dev_outbox_enabled() else None
    return render_page_or_fragment(
        "auth/two_factor_enable.html",
        "auth/two_factor_enable.html",
        **_enable_context(user, email_sent=sent, dev_code=dev_code),
    )


# --- re-authentication for sensitive actions ------------------------------------------


@bp.route("/reauth", methods=["POST"])
@requires(Permission.ACCOUNT)
@limiter.limit("10/minute")
def reauth():
    """Resume a GET that asked for a fresh proof (non-GET actions resume in place)."""
    from portal.auth.reauth import render_reauth, verify_submitted_proof

    row = current_session()
    next_url = safe_next(request.form.get("next"), url_for("main.index"))
    form = EmptyForm()
    if row is None or not form.validate_on_submit():
        abort(400)
    try:
        ok = verify_submitted_proof()
    except services.AccountLockedError as locked:
        db.session.commit()
        raise too_many(locked.retry_after) from None
    if ok:
        mark_reauthenticated(row)
        db.session.commit()
        return redirect_or_hx(next_url)
    db.session.commit()
    return render_reauth(_("Mot de passe ou code incorrect."))


@bp.route("/reauth/email", methods=["POST"])
@requires(Permission.ACCOUNT)
@limiter.limit("3/minute;10/hour")
def reauth_send_code():
    form = EmptyForm()
    user = current_user._get_current_object()
    if not form.validate_on_submit() or user.two_factor_method != TwoFactorMethod.EMAIL:
        abort(409)
    code = services.issue_email_code(user, "reauth", current_binding())
    db.session.commit()
    _send_email_code(user, code)
    return "", 204


# --- password reset and invitations ---------------------------------------------------


@bp.route("/password/forgot", methods=["GET", "POST"])
@public
@limiter.limit("5/minute;20/hour", methods=["POST"])
def password_forgot():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        issued = services.request_password_reset(form.email.data, current_actor())
        db.session.commit()
        if issued:
            user, token = issued
            send_template_safely(
                user.email,
                "password_reset",
                user.locale,
                user=user,
                link=absolute_url("auth.password_reset", token=token),
                minutes=60,
            )
        # The same answer whether or not the address exists.
        return render_page_or_fragment("auth/password_forgot_sent.html", "auth/password_forgot_sent.html")
    status = 422 if form.is_submitted() else 200
    return render_page_or_fragment("auth/password_forgot.html", "auth/password_forgot.html", status=status, form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@public
@limiter.limit("5/minute;20/hour", methods=["POST"])
def password_reset(token: str):
    row = services.peek_token(token, "password_reset")
    if row is None:
        return render_error(404, _("Ce lien de réinitialisation n'est pas valide, a déjà servi ou a expiré."))
    form = ResetPasswordForm()
    form.account_email = row.user.email
    if form.validate_on_submit():
        user = services.reset_password(token, form.password.data, current_actor())
        if user is None:
            return render_error(404, _("Ce lien de réinitialisation n'est pas valide, a déjà servi ou a expiré."))
        db.session.commit()
        end_session()
        flash(_("Mot de passe modifié. Connectez-vous avec le nouveau mot de passe."), "success")
        return redirect_or_hx(url_for("auth.login"))
    status = 422 if form.is_submitted() else 200
    return render_page_or_fragment("auth/password_reset.html", "auth/password_reset.html", status=status, form=form)


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@public
@limiter.limit("5/minute;20/hour", methods=["POST"])
def accept_invitation(token: str):
    from portal.users import services as user_services

    row = services.peek_token(token, "invitation")
    if row is None or not row.user.active:
        return render_error(404, _("Cette invitation n'est pas valide, a déjà servi ou a expiré."))
    form = AcceptInvitationForm(data={"name": row.user.name} if request.method == "GET" else None)
    form.account_email = row.user.email
    if form.validate_on_submit():
        user = user_services.accept_invitation(token, form.name.data, form.password.data, current_actor())
        if user is None:
            return render_error(404, _("Cette invitation n'est pas valide, a déjà servi ou a expiré."))
        services.complete_login(user, current_actor(), "invitation")
        start_session(user, **_client())
        db.session.commit()
        flash(_("Bienvenue dans %(org)s !", org=user.organization.name), "success")
        return redirect_or_hx(url_for("main.index"))
    status = 422 if form.is_submitted() else 200
    return render_page_or_fragment(
        "auth/invitation.html", "auth/invitation.html", status=status, form=form, invited=row.user
    )


# --- development outbox ---------------------------------------------------------------


@bp.route("/dev/outbox")
@requires(Permission.ACCOUNT)  # narrowed below: platform admins, or organisation admins
def dev_outbox():
    if current_app.config["COFFRE_ENV"] == "production":
        abort(404)  # production always has SMTP: there is no outbox to show
    viewer = current_user._get_current_object()
    if not (viewer.is_platform_admin or has_permission(viewer, Permission.USER_MANAGE)):
        _on_forbidden(Permission.USER_MANAGE)
    member_id = request.args.get("membre", type=int)
    return render_page_or_fragment(
        "auth/dev_outbox.html",
        "auth/dev_outbox.html",
        messages=read_outbox(viewer=viewer, user_id=member_id),
        smtp=smtp_configured(),
        platform=viewer.is_platform_admin,
        filtered=member_id is not None,
    )
