from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

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
