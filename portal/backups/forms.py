from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange

from portal.backups.retention import LIMITS


class SettingsForm(FlaskForm):
    schedule = SelectField(
        _l("Sauvegarde planifiée"),
        choices=lambda: [SelectChoice("quotidien", str(_l("Chaque nuit"))), SelectChoice("aucun", str(_l("Aucune")))],
        default="quotidien",
    )
    keep_daily = IntegerField(
        _l("Sauvegardes quotidiennes gardées"),
        validators=[InputRequired(), NumberRange(*LIMITS["keep_daily"])],
    )
    keep_weekly = IntegerField(
        _l("Sauvegardes hebdomadaires gardées"),
        validators=[InputRequired(), NumberRange(*LIMITS["keep_weekly"])],
    )
    keep_monthly = IntegerField(
        _l("Sauvegardes mensuelles gardées"),
        validators=[InputRequired(), NumberRange(*LIMITS["keep_monthly"])],
    )
