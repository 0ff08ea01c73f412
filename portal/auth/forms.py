from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from portal.security.password_policy import MAX_LENGTH, password_problems
from portal.security.text import name_filter


class NewPassword:
    """Validator applying the password policy (and refusing the e-mail as password)."""

    def __init__(self, email_field: str | None = None) -> None:
        self.email_field = email_field

    def __call__(self, form: FlaskForm, field) -> None:
        email = None
        if self.email_field:
            email = form[self.email_field].data
        elif getattr(form, "account_email", None):
            email = form.account_email
        problems = password_problems(field.data or "", email)
        if problems:
            raise ValidationError(problems[0])


class LoginForm(FlaskForm):
    # No syntax check at login: the address is only looked up.
    email = EmailField(_l("Adresse e-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Mot de passe"), validators=[DataRequired(), Length(max=MAX_LENGTH)])
    remember = BooleanField(_l("Rester connecté sur cet appareil"))


class RegisterForm(FlaskForm):
    organization_name = StringField(
        _l("Nom de l'organisation"), filters=[name_filter], validators=[DataRequired(), Length(max=200)]
    )
    name = StringField(_l("Votre nom"), filters=[name_filter], validators=[DataRequired(), Length(max=120)])
    email = EmailField(_l("Adresse e-mail"), validators=[DataRequired(), Email(), Length(max=254)])
    password = PasswordField(
        _l("Mot de passe"),
        validators=[DataRequired(), NewPassword("email")],
        description=_l("Au moins 12 caractères. Une phrase facile à retenir convient très bien."),
    )


class CodeForm(FlaskForm):
    code = StringField(_l("Code"), validators=[DataRequired(), Length(max=20)])


class TotpEnableForm(FlaskForm):
    method = HiddenField(default="totp")
    code = StringField(_l("Code à 6 chiffres affiché par l'application"), validators=[DataRequired(), Length(max=10)])


class EmailEnableForm(FlaskForm):
    method = HiddenField(default="email")
    code = StringField(_l("Code reçu par e-mail"), validators=[DataRequired(), Length(max=10)])


class ForgotPasswordForm(FlaskForm):
    email = EmailField(_l("Adresse e-mail"), validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(FlaskForm):
    account_email: str | None = None
    password = PasswordField(_l("Nouveau mot de passe"), validators=[DataRequired(), NewPassword()])
    confirm = PasswordField(
        _l("Confirmez le mot de passe"),
        validators=[DataRequired(), EqualTo("password", message=_l("Les deux mots de passe diffèrent."))],
    )


class AcceptInvitationForm(ResetPasswordForm):
    name = StringField(_l("Votre nom"), filters=[name_filter], validators=[DataRequired(), Length(max=120)])


class EmptyForm(FlaskForm):
    """A CSRF-protected button-only form (logout, delete, …)."""
