from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from portal.auth import bp, services
from portal.auth.forms import EmptyForm, LoginForm
from portal.auth.sessions import start_session
from portal.extensions import db, limiter
from portal.security.permissions import Permission, public, requires
from portal.web.context import current_actor
from portal.web.htmx import redirect_or_hx, safe_next


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
        user = services.authenticate(form.email.data, form.password.data, current_actor())
        db.session.commit()
        if user is not None:
            start_session(user)
            return redirect_or_hx(next_url)
        form.password.errors.append(_("Adresse e-mail ou mot de passe incorrect."))
        status = 422
    elif form.is_submitted():
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@requires(Permission.ACCOUNT)
def logout():
    form = EmptyForm()
    if form.validate_on_submit():
        services.logout(current_user, current_actor())
        db.session.commit()
        logout_user()
    response = redirect_or_hx(url_for("auth.login"))
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response
