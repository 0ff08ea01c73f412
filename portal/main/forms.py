from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField


class LanguageForm(FlaskForm):
    language = SelectField(choices=[("fr", "Français"), ("en", "English")])
    next = HiddenField()
