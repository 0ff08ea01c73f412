from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, Length, NumberRange

from portal.api.services import DEFAULT_DAYS, MAX_DAYS, MAX_NAME
from portal.security.text import name_filter


class TokenForm(FlaskForm):
    name = StringField(_l("Nom du jeton"), filters=[name_filter], validators=[DataRequired(), Length(max=MAX_NAME)])
    days = IntegerField(
        _l("Durée de validité (jours)"),
        default=DEFAULT_DAYS,
        validators=[DataRequired(), NumberRange(min=1, max=MAX_DAYS)],
    )
