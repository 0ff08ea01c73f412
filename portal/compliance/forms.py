from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, NumberRange, Optional

from portal.compliance.models import TARGET_TYPES


class TargetForm(FlaskForm):
    target_type = HiddenField(validators=[DataRequired(), AnyOf(TARGET_TYPES)])
    target_id = HiddenField(validators=[DataRequired()])


class HoldForm(TargetForm):
    reason = StringField(_l("Motif"), validators=[DataRequired(), Length(max=500)])
    reference = StringField(_l("Référence (n° de dossier)"), validators=[DataRequired(), Length(max=120)])


class LiftForm(FlaskForm):
    reason = StringField(_l("Motif de la levée"), validators=[DataRequired(), Length(max=500)])


class RuleForm(TargetForm):
    duration_days = IntegerField(_l("Durée (jours)"), validators=[DataRequired(), NumberRange(min=1, max=366 * 200)])
    mode = SelectField(
        _l("Mode"),
        choices=lambda: [
            SelectChoice("gouvernance", str(_l("Gouvernance"))),
            SelectChoice("conformite", str(_l("Conformité"))),
        ],
        default="gouvernance",
    )
    counted_from = SelectField(
        _l("À compter de"),
        choices=lambda: [
            SelectChoice("upload", str(_l("l'ajout"))),
            SelectChoice("last_version", str(_l("la dernière version"))),
            SelectChoice("event", str(_l("la date d'événement"))),
        ],
        default="upload",
    )


class DecisionForm(FlaskForm):
    decision = SelectField(
        choices=lambda: [
            SelectChoice("keep", str(_l("Conserver plus longtemps"))),
            SelectChoice("destroy", str(_l("Détruire"))),
        ]
    )
    extend_days = IntegerField(_l("Prolonger de (jours)"), validators=[Optional(), NumberRange(min=1, max=366 * 100)])


class BypassForm(FlaskForm):
    granted = SelectField(choices=lambda: [SelectChoice("1", str(_l("Accordé"))), SelectChoice("0", str(_l("Retiré")))])
