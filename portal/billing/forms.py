from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

PERIOD_CHOICES = [SelectChoice("mensuel", _l("Mensuel")), SelectChoice("annuel", _l("Annuel"))]
METHOD_CHOICES = [SelectChoice("mobile", _l("Mobile money")), SelectChoice("carte", _l("Carte bancaire"))]


class ChooseForm(FlaskForm):
    plan = HiddenField(validators=[DataRequired()])
    period = SelectField(_l("Période"), choices=PERIOD_CHOICES, validators=[DataRequired()])


class PayForm(FlaskForm):
    plan = HiddenField(validators=[DataRequired()])
    period = HiddenField(validators=[DataRequired()])
    method = SelectField(_l("Moyen de paiement"), choices=METHOD_CHOICES, validators=[DataRequired()])
    network = SelectField(_l("Réseau"), choices=[], validators=[Optional()], validate_choice=False)
    phone = StringField(_l("Numéro de téléphone"), validators=[Optional(), Length(max=30)])


class ConfirmForm(FlaskForm):
    """A POST-only button: nothing but the CSRF token."""


BACKUP_CHOICES = [
    SelectChoice("hebdomadaire", _l("Hebdomadaire")),
    SelectChoice("quotidienne", _l("Quotidienne")),
    SelectChoice("horaire", _l("Toutes les heures")),
]


class PlanForm(FlaskForm):
    """A plan as a platform administrator edits it (the code only when creating)."""

    code = StringField(_l("Code (unique, non modifiable)"), validators=[Optional(), Length(max=40)])
    name = StringField(_l("Nom"), validators=[DataRequired(), Length(max=80)])
    price_month_ht = IntegerField(_l("Prix mensuel HT (XOF)"), validators=[DataRequired(), NumberRange(min=1)])
    price_year_ht = IntegerField(_l("Prix annuel HT (XOF)"), validators=[DataRequired(), NumberRange(min=1)])
    storage_quota_mb = IntegerField(_l("Quota de stockage (Mo)"), validators=[DataRequired(), NumberRange(min=1)])
    member_quota = IntegerField(_l("Nombre de membres"), validators=[DataRequired(), NumberRange(min=1)])
    sso = BooleanField(_l("Connexion unique (SSO)"))
    compliance = BooleanField(_l("Mode conformité"))
    backup = SelectField(_l("Fréquence des sauvegardes"), choices=BACKUP_CHOICES, validators=[DataRequired()])
    position = IntegerField(_l("Ordre d'affichage"), default=0, validators=[Optional(), NumberRange(min=0, max=1000)])
    active = BooleanField(_l("Proposée au choix (active)"), default=True)
