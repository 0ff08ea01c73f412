from __future__ import annotations

from flask import current_app, flash, make_response, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select, update

from portal.auth import clock
from portal.auth import services as auth_services
from portal.auth.forms import EmptyForm
from portal.auth.models import TwoFactorMethod, UserSession
from portal.auth.reauth import mark_reauthenticated, requires_recent_auth
from portal.auth.sessions import current_binding, current_session, is_expired, revoke_sessions
from portal.extensions import db, limiter
from portal.mail import send_template_safely
from portal.profile import bp
from portal.profile.forms import DisableTwoFactorForm, PasswordChangeForm, ProfileForm
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.sso import services as sso_services
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx, render_page_or_fragment


def _sessions() -> list[UserSession]:
    at = clock.now()
    rows = db.session.execute(
        select(UserSession)
        .where(
            UserSession.user_id == current_user.id,
            UserSession.revoked_at.is_(None),
            UserSession.mfa_pending.is_(False),
        )
        .order_by(UserSession.last_seen_at.desc())
    ).scalars()
    return [row for row in rows if not is_expired(row, at)]


def _context(**forms) -> dict:
    user = current_user
    row = current_session()
    context = {
        "profile_form": ProfileForm(formdata=None, data={"name": user.name, "locale": user.locale or "fr"}),
        "password_form": PasswordChangeForm(formdata=None),
        "disable_form": DisableTwoFactorForm(formdata=None),
        "action_form": EmptyForm(formdata=None),
        "sessions": _sessions(),
        "current_session_id": row.id if row else None,
        "recovery_left": auth_services.remaining_recovery_codes(user) if user.has_two_factor else 0,
        "TwoFactorMethod": TwoFactorMethod,
        "identities": sso_services.identities_of(user),
    }
    context.update({key: value for key, value in forms.items() if value is not None})
    return context


@bp.route("")
@requires(Permission.ACCOUNT)
def index():
    return render_page_or_fragment("profile/index.html", "profile/index.html", **_context())


@bp.route("", methods=["POST"])
@requires(Permission.ACCOUNT)
def update_profile():
    form = ProfileForm()
    if not form.validate_on_submit():
        return render_page_or_fragment(
            "profile/index.html", "profile/_profile_form.html", status=422, **_context(profile_form=form)
        )
    current_user.name = form.name.data.strip()
    current_user.locale = form.locale.data
    db.session.commit()
    flash(_("Profil enregistré."), "success")
    response = redirect_or_hx(url_for("profile.index"))
    response.set_cookie(
        "coffre_lang",
        form.locale.data,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


@bp.route("/password", methods=["POST"])
@requires(Permission.ACCOUNT)
@limiter.limit("5/minute;20/hour")
def change_password():
    form = PasswordChangeForm()
    form.account_email = current_user.email
    if form.validate_on_submit():
        row = current_session()
        try:
            auth_services.check_lock(current_user, clock.now(), current_actor().ip)
        except auth_services.AccountLockedError as locked:
            from portal.auth.routes import too_many

            raise too_many(locked.retry_after) from None
        ok = auth_services.change_password(
            current_user,
            form.current_password.data,
            form.password.data,
            current_actor(),
            keep_session_id=row.id if row else None,
            end_others=bool(form.end_other_sessions.data),
        )
        if ok:
            if row is not None:
                mark_reauthenticated(row)
            db.session.commit()
            flash(_("Mot de passe modifié."), "success")
            return redirect_or_hx(url_for("profile.index"))
        db.session.commit()  # the failure counter
        form.current_password.errors.append(_("Mot de passe actuel incorrect."))
    return render_page_or_fragment(
        "profile/index.html", "profile/_password_form.html", status=422, **_context(password_form=form)
    )


@bp.route("/2fa/disable", methods=["POST"])
@requires(Permission.ACCOUNT)
@limiter.limit("5/minute;20/hour")
def disable_two_factor():
    user = current_user._get_current_object()
    if not user.has_two_factor:
        return redirect_or_hx(url_for("profile.index"))
    form = DisableTwoFactorForm()
    if form.validate_on_submit():
        try:
            auth_services.check_lock(user, clock.now(), current_actor().ip)
        except auth_services.AccountLockedError as locked:
            from portal.auth.routes import too_many

            raise too_many(locked.retry_after) from None
        if auth_services.disable_two_factor(
            user, form.password.data, form.code.data, current_binding(), current_actor()
        ):
            row = current_session()
            if row is not None:
                mark_reauthenticated(row)
            db.session.commit()
            send_template_safely(user.email, "two_factor_changed", user.locale, user=user, enabled=False)
            flash(_("Double authentification désactivée."), "warning")
            return redirect_or_hx(url_for("profile.index"))
        db.session.commit()
        form.code.errors.append(_("Mot de passe ou code incorrect."))
    return render_page_or_fragment(
        "profile/index.html", "profile/_two_factor.html", status=422, **_context(disable_form=form)
    )


@bp.route("/2fa/email-code", methods=["POST"])
@requires(Permission.ACCOUNT)
@limiter.limit("3/minute;10/hour")
def send_disable_code():
    user = current_user._get_current_object()
    form = EmptyForm()
    if not form.validate_on_submit() or user.two_factor_method != TwoFactorMethod.EMAIL:
        return render_error(409)
    code = auth_services.issue_email_code(user, "disable", current_binding())
    db.session.commit()
    send_template_safely(user.email, "email_code", user.locale, user=user, code=code, minutes=10)
    flash(_("Un code a été envoyé à %(email)s.", email=user.email), "success")
    return redirect_or_hx(url_for("profile.index"))


@bp.route("/2fa/recovery-codes", methods=["POST"])
@requires(Permission.ACCOUNT)
@requires_recent_auth
def regenerate_recovery_codes():
    user = current_user._get_current_object()
    if not user.has_two_factor:
        return render_error(409, _("Activez d'abord la double authentification."))
    codes = auth_services.regenerate_recovery_codes(user, current_actor())
    db.session.commit()
    response = make_response(
        render_page_or_fragment("auth/recovery_codes.html", "auth/_recovery_codes.html", codes=codes, first_time=False)
    )
    return response


@bp.route("/sessions/<int:session_id>/end", methods=["POST"])
@requires(Permission.ACCOUNT)
def end_session(session_id: int):
    form = EmptyForm()
    row = get_scoped_or_404(UserSession, session_id)
    if row.user_id != current_user.id or not form.validate_on_submit():
        return render_error(404)
    db.session.execute(
        update(UserSession)
        .where(UserSession.id == row.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    auth_services.record(
        "user.sessions_revoked",
        current_actor(),
        target_type="user",
        target_id=current_user.id,
        target_label=current_user.email,
        details={"session_id": row.id},
    )
    db.session.commit()
    flash(_("Session fermée."), "success")
    return redirect_or_hx(url_for("profile.index"))


@bp.route("/sessions/end-others", methods=["POST"])
@requires(Permission.ACCOUNT)
def end_other_sessions():
    form = EmptyForm()
    if not form.validate_on_submit():
        return render_error(400)
    row = current_session()
    ended = revoke_sessions(current_user.id, except_id=row.id if row else None)
    auth_services.record(
        "user.sessions_revoked",
        current_actor(),
        target_type="user",
        target_id=current_user.id,
        target_label=current_user.email,
        details={"ended": ended},
    )
    db.session.commit()
    flash(_("Vos autres sessions sont fermées."), "success")
    return redirect_or_hx(url_for("profile.index"))


@bp.app_template_filter("device_name")
def device_name_filter(user_agent: str | None) -> str:
    """ "Chrome sur Windows" for the sessions list (the dashboard's reading of a User-Agent)."""
    from portal.dashboard.formatting import device_name

    return str(device_name(user_agent))
