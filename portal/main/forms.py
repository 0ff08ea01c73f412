from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import AnyOf, DataRequired


class LanguageForm(FlaskForm):
    # Sent by one submit button per language; a plain field keeps the form free of JS.
    language = StringField(validators=[DataRequired(), AnyOf(["fr", "en"])])
    next = HiddenField()
