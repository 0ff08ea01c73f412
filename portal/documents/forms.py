from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class ArmoireForm(FlaskForm):
    name = StringField(_l("Nom"), validators=[DataRequired(), Length(max=120)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=500)])


class RenameForm(FlaskForm):
    name = StringField(_l("Nouveau nom"), validators=[DataRequired(), Length(max=255)])


class FolderForm(FlaskForm):
    name = StringField(_l("Nom du dossier"), validators=[DataRequired(), Length(max=255)])


class MoveForm(FlaskForm):
    # "armoire_id:folder_id" with folder_id empty for the armoire's root.
    destination = SelectField(_l("Destination"), validators=[DataRequired()], choices=[])


class ConfirmForm(FlaskForm):
    """A POST-only button: nothing but the CSRF token."""


class ForcedDeletionForm(FlaskForm):
    """Delete despite a gouvernance retention rule: the reason goes into the journal."""

    motif = TextAreaField(_l("Motif (consigné dans le journal)"), validators=[DataRequired(), Length(max=500)])
