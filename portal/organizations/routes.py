from __future__ import annotations

from flask import current_app, flash, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.auth.reauth import requires_recent_auth
from portal.extensions import db
from portal.organizations import bp, services
from portal.organizations.forms import SettingsForm
from portal.security.permissions import Permission, requires
from portal.web.context import current_actor
from portal.web.htmx import redirect_or_hx, render_page_or_fragment


def _render(form: SettingsForm, status: int = 200):
    return render_page_or_fragment(
        "organizations/settings.html",
        "organizations/_settings_form.html",
        status=status,
        form=form,
        instance_idle=current_app.config["SESSION_IDLE_MINUTES"],
        instance_absolute=current_app.config["SESSION_ABSOLUTE_HOURS"],
    )


@bp.route("/organisation/parametres")
@requires(Permission.ORGANIZATION_MANAGE)
def settings():
    org = current_user.organization
    form = SettingsForm(
        formdata=None,
        data={
            "name": org.name,
            "require_2fa": org.require_2fa,
            "session_idle_minutes": str(org.session_idle_minutes or ""),
            "session_absolute_hours": str(org.session_absolute_hours or ""),
            "default_locale": org.default_locale or "",
        },
    )
    return _render(form)


@bp.route("/organisation/parametres", methods=["POST"])
@requires(Permission.ORGANIZATION_MANAGE)
@requires_recent_auth  # the 2FA policy and the session lengths are the organisation's security
def save_settings():
    form = SettingsForm()
    if not form.validate_on_submit():
        return _render(form, 422)
    org = current_user.organization
    changes = services.update_settings(
        org,
        services.Settings(
            name=form.name.data,
            require_2fa=bool(form.require_2fa.data),
            session_idle_minutes=form.idle_minutes,
            session_absolute_hours=form.absolute_hours,
            default_locale=form.default_locale.data or None,
        ),
        current_actor(),
    )
    db.session.commit()
    if not changes:
        flash(_("Aucun changement."), "info")
    elif changes.get("require_2fa") == [True, False]:
        flash(_("Paramètres enregistrés. La double authentification n'est plus exigée ; c'est journalisé."), "warning")
    else:
        flash(_("Paramètres enregistrés."), "success")
    return redirect_or_hx(url_for("organizations.settings"))
