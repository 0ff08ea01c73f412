"""/me/jetons: a signed-in member creates, names and revokes their own API tokens."""

from __future__ import annotations

from flask import Response
from flask_babel import gettext as _
from flask_login import current_user

from portal.api import services, tokens_bp
from portal.api.forms import TokenForm
from portal.api.models import ApiToken
from portal.auth import clock
from portal.auth.forms import EmptyForm
from portal.auth.reauth import requires_recent_auth
from portal.extensions import db
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import render_page_or_fragment


def _render(form: TokenForm | None = None, secret: str | None = None, status: int = 200) -> Response:
    return render_page_or_fragment(
        "api/tokens.html",
        "api/_tokens.html",
        status=status,
        form=form or TokenForm(formdata=None),
        action_form=EmptyForm(formdata=None),
        tokens=services.user_tokens(current_user),
        secret=secret,
        now=clock.now(),
    )


@tokens_bp.get("")
@requires(Permission.ACCOUNT)
def index() -> Response:
    return _render()


@tokens_bp.post("")
@requires(Permission.ACCOUNT)
@requires_recent_auth
def create() -> Response:
    form = TokenForm()
    if not form.validate_on_submit():
        return _render(form, status=422)
    try:
        _token, secret = services.create_token(current_user, current_actor(), name=form.name.data, days=form.days.data)
    except services.TokenError:
        form.name.errors.append(_("Nom invalide."))
        return _render(form, status=422)
    db.session.commit()
    # Shown once, in this response only: the server keeps nothing but its hash.
    return _render(secret=secret, status=201)


@tokens_bp.post("/<int(max=2147483647):token_id>/revoquer")
@requires(Permission.ACCOUNT)
def revoke(token_id: int) -> Response:
    if not EmptyForm().validate_on_submit():
        return render_error(400)
    token = get_scoped_or_404(ApiToken, token_id)
    if token.user_id != current_user.id:
        # Another member's token in the same organisation is not theirs to see.
        return render_error(404)
    services.revoke_token(token, current_actor())
    db.session.commit()
    return _render()
