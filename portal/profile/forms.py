from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from portal.auth.forms import NewPassword
from portal.security.password_policy import MAX_LENGTH
from portal.security.text import name_filter


class ProfileForm(FlaskForm):
    name = StringField(_l("Nom"), filters=[name_filter], validators=[DataRequired(), Length(max=120)])
    locale = SelectField(_l("Langue"), choices=[SelectChoice("fr", "Français"), SelectChoice("en", "English")])


class PasswordChangeForm(FlaskForm):
    account_email: str | None = None
    current_password = PasswordField(_l("Mot de passe actuel"), validators=[DataRequired(), Length(max=MAX_LENGTH)])
    password = PasswordField(_l("Nouveau mot de passe"), validators=[DataRequired(), NewPassword()])
    confirm = PasswordField(
        _l("Confirmez le nouveau mot de passe"),
        validators=[DataRequired(), EqualTo("password", message=_l("Les deux mots de passe diffèrent."))],
    )
    end_other_sessions = BooleanField(_l("Fermer mes autres sessions"), default=True)


class DisableTwoFactorForm(FlaskForm):
    password = PasswordField(_l("Mot de passe"), validators=[DataRequired(), Length(max=MAX_LENGTH)])
    code = StringField(
        _l("Code actuel (application, e-mail ou code de secours)"), validators=[DataRequired(), Length(max=20)]
    )
