from __future__ import annotations

from flask import Response, flash, stream_with_context, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from portal.auth.forms import EmptyForm
from portal.auth.models import User
from portal.auth.reauth import requires_recent_auth
from portal.database import utcnow, writes_on_get
from portal.extensions import db, limiter
from portal.privacy import bp, export, pseudonymise
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx


@bp.route("/users/<int:user_id>/donnees.zip")
@requires(Permission.USER_MANAGE)
@writes_on_get
@requires_recent_auth
@limiter.limit("6/minute")  # decrypts every file the member uploaded
def export_member(user_id: int):
    member = get_scoped_or_404(User, user_id)
    actor = current_actor()
    export.record_export(member, actor)
    # Committed before the first byte: an export that was served is always in the journal.
    db.session.commit()
    # Resolved now and kept with the request: messages built while streaming (an integrity
    # failure) must not need the signed-in user, whose session the view's end releases.
    get_locale()
    response = Response(stream_with_context(export.stream_zip(member.id, actor)), mimetype="application/zip")
    filename = f"coffre-membre-{member.id}-{utcnow():%Y%m%d-%H%M%S}.zip"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/users/<int:user_id>/pseudonymiser", methods=["POST"])
@requires(Permission.USER_MANAGE)
@requires_recent_auth
def pseudonymise_member(user_id: int):
    member = get_scoped_or_404(User, user_id)
    form = EmptyForm()
    if not form.validate_on_submit():
        return render_error(400)
    try:
        result = pseudonymise.pseudonymise(member, current_actor())
    except pseudonymise.MemberStillActiveError:
        db.session.rollback()
        return render_error(409, _("Désactivez d'abord ce membre : seul un membre parti peut être pseudonymisé."))
    except pseudonymise.AlreadyPseudonymisedError:
        db.session.rollback()
        return render_error(409, _("Ce membre est déjà pseudonymisé."))
    db.session.commit()
    flash(
        _(
            "Le membre est pseudonymisé sous le nom « %(name)s » ; %(count)d entrées du journal ne le nomment plus.",
            name=result.pseudonym.name,
            count=result.journal_entries,
        ),
        "success",
    )
    return redirect_or_hx(url_for("users.index"))
