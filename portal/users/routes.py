from __future__ import annotations

from flask import flash, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from portal.auth.forms import EmptyForm
from portal.auth.models import User
from portal.auth.reauth import requires_recent_auth
from portal.auth.services import EmailTakenError
from portal.billing.services import MemberQuotaError
from portal.extensions import db
from portal.mail import absolute_url, dev_outbox_enabled, send_template_safely
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.users import bp, services
from portal.users.forms import ROLE_LABELS, InviteForm, RoleForm
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx, render_page_or_fragment, wants_fragment
from portal.web.pagination import paginate

PER_PAGE = 20


def _list_context(invite_form: InviteForm | None = None) -> dict:
    search = (request.args.get("q") or "").strip()[:100]
    page = paginate(services.members_query(current_user.organization_id, search), request.args.get("page"), PER_PAGE)
    pending = [member.id for member in page.items if member.active and member.password_hash is None]
    tokens = services.pending_invitation_tokens(current_user.organization_id, pending)
    return {
        "members_page": page,
        "invitation_links": {
            user_id: absolute_url("auth.accept_invitation", token=token) for user_id, token in tokens.items()
        },
        "dev_outbox": dev_outbox_enabled(),
        "search": search,
        "invite_form": invite_form or InviteForm(formdata=None),
        "role_labels": ROLE_LABELS,
        "action_form": EmptyForm(formdata=None),
    }


@bp.route("")
@requires(Permission.USER_MANAGE)
def index():
    return render_page_or_fragment("users/index.html", "users/_members.html", **_list_context())


@bp.route("/invite", methods=["POST"])
@requires(Permission.USER_MANAGE)
def invite():
    form = InviteForm()
    if form.validate_on_submit():
        try:
            user, token = services.invite(
                current_user.organization_id, form.email.data, form.name.data, form.role.data, current_actor()
            )
        except MemberQuotaError as error:
            db.session.rollback()
            form.email.errors.append(error.message)
            return render_page_or_fragment(
                "users/index.html", "users/_invite_form.html", status=403, **_list_context(form)
            )
        except (EmailTakenError, IntegrityError):  # IntegrityError: a concurrent twin won
            db.session.rollback()
            form.email.errors.append(_("Cette adresse est déjà utilisée par un compte Coffre."))
            return render_page_or_fragment(
                "users/index.html", "users/_invite_form.html", status=409, **_list_context(form)
            )
        db.session.commit()
        if not _send_invitation(user, token):
            flash(_("Le membre est créé mais l'e-mail n'a pas pu partir. Réessayez plus tard."), "error")
        elif dev_outbox_enabled():
            flash(_no_smtp_message(user), "warning")
        else:
            flash(_("Invitation envoyée à %(email)s.", email=user.email), "success")
        return redirect_or_hx(url_for("users.index"))
    return render_page_or_fragment("users/index.html", "users/_invite_form.html", status=422, **_list_context(form))


def _no_smtp_message(user: User) -> str:
    return _(
        "Aucun serveur d'e-mail n'est configuré : l'invitation de %(email)s n'est pas partie. "
        "Copiez son lien dans la liste ci-dessous, ou voyez le message.",
        email=user.email,
    )


def _send_invitation(user: User, token: str) -> bool:
    link = absolute_url("auth.accept_invitation", token=token)
    return send_template_safely(
        user.email,
        "invitation",
        current_user.locale,
        user=user,
        inviter=current_user.name,
        role_label=ROLE_LABELS[user.role],
        link=link,
        days=7,
    )


@bp.route("/<int:user_id>/reinvite", methods=["POST"])
@requires(Permission.USER_MANAGE)
def reinvite(user_id: int):
    member = get_scoped_or_404(User, user_id)
    form = EmptyForm()
    if not form.validate_on_submit():
        return render_error(400)
    if member.password_hash is not None or not member.active:
        return render_error(409, _("Ce membre a déjà activé son compte ou est désactivé."))
    token = services.reinvite(member, current_actor())
    db.session.commit()
    if not _send_invitation(member, token):
        flash(_("L'e-mail n'a pas pu partir. Réessayez plus tard."), "error")
    elif dev_outbox_enabled():
        flash(_no_smtp_message(member), "warning")
    else:
        flash(_("Invitation renvoyée à %(email)s ; l'ancien lien ne fonctionne plus.", email=member.email), "success")
    return redirect_or_hx(url_for("users.index"))


@bp.route("/<int:user_id>/revoquer-invitation", methods=["POST"])
@requires(Permission.USER_MANAGE)
def revoke_invitation(user_id: int):
    member = get_scoped_or_404(User, user_id)
    form = EmptyForm()
    if not form.validate_on_submit():
        return render_error(400)
    email = member.email
    try:
        services.revoke_invitation(member, current_actor())
    except services.NotPendingError:
        db.session.rollback()
        return render_error(409, _("Ce membre a déjà activé son compte : désactivez-le plutôt."))
    db.session.commit()
    flash(_("Invitation de %(email)s révoquée ; son lien ne fonctionne plus.", email=email), "success")
    return redirect_or_hx(url_for("users.index"))


@bp.route("/<int:user_id>", methods=["PUT", "POST"])
@requires(Permission.USER_MANAGE)
@requires_recent_auth
def update(user_id: int):
    member = get_scoped_or_404(User, user_id)
    form = RoleForm()
    status = 200
    message = None
    if not form.validate():
        status = 422
        message = _("Rôle inconnu : choisissez lecteur, contributeur ou administrateur.")
    else:
        try:
            changed = services.change_role(member, form.role.data, current_actor())
        except services.LastAdminError:
            db.session.rollback()
            status = 409
            message = _(
                "%(name)s est le dernier administrateur actif : nommez d'abord un autre administrateur.",
                name=member.name,
            )
        else:
            db.session.commit()
            message = _("Rôle mis à jour.") if changed else _("Rôle inchangé.")
    if not wants_fragment():
        flash(message, "error" if status >= 400 else "success")
        if status >= 400:
            return render_error(status, message)
        return redirect_or_hx(url_for("users.index"))
    return render_page_or_fragment(
        "users/index.html",
        "users/_role_cell.html",
        status=status,
        member=member,
        message=message,
        error=status >= 400,
        role_labels=ROLE_LABELS,
    )


def _set_active(user_id: int, active: bool):
    member = get_scoped_or_404(User, user_id)
    form = EmptyForm()
    if not form.validate_on_submit():
        return render_error(400)
    if not active and member.id == current_user.id:
        return render_error(409, _("Vous ne pouvez pas désactiver votre propre compte."))
    if active and member.pseudonymised_at is not None:
        return render_error(409, _("Ce membre est déjà pseudonymisé."))
    try:
        if active:
            services.reactivate(member, current_actor())
        else:
            services.deactivate(member, current_actor())
    except services.LastAdminError:
        db.session.rollback()
        return render_error(
            409,
            _(
                "%(name)s est le dernier administrateur actif : nommez d'abord un autre administrateur.",
                name=member.name,
            ),
        )
    db.session.commit()
    if active:
        flash(_("%(name)s est réactivé.", name=member.name), "success")
    else:
        flash(_("%(name)s est désactivé ; ses sessions sont fermées.", name=member.name), "success")
    return redirect_or_hx(url_for("users.index"))


@bp.route("/<int:user_id>/deactivate", methods=["POST"])
@requires(Permission.USER_MANAGE)
def deactivate(user_id: int):
    return _set_active(user_id, False)


@bp.route("/<int:user_id>/reactivate", methods=["POST"])
@requires(Permission.USER_MANAGE)
def reactivate(user_id: int):
    return _set_active(user_id, True)
