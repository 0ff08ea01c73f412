from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField, StringField
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
        choices=[("gouvernance", _l("Gouvernance")), ("conformite", _l("Conformité"))],
        default="gouvernance",
    )
    counted_from = SelectField(
        _l("À compter de"),
        choices=[
            ("upload", _l("l'ajout")),
            ("last_version", _l("la dernière version")),
            ("event", _l("la date d'événement")),
        ],
        default="upload",
    )


class DecisionForm(FlaskForm):
    decision = SelectField(choices=[("keep", _l("Conserver plus longtemps")), ("destroy", _l("Détruire"))])
    extend_days = IntegerField(_l("Prolonger de (jours)"), validators=[Optional(), NumberRange(min=1, max=366 * 100)])


class BypassForm(FlaskForm):
    granted = SelectField(choices=[("1", _l("Accordé")), ("0", _l("Retiré"))])
