from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from portal.security.text import name_filter

IDLE_MIN_MINUTES = 5
ABSOLUTE_MIN_HOURS = 1


def locale_choices() -> list[tuple[str, str]]:
    return [("", str(_l("Celle du navigateur (français par défaut)"))), ("fr", "Français"), ("en", "English")]


def _bounded(field: StringField, low: int, high: int, message) -> int | None:
    """The field as a whole number in [low, high]; empty means None (the instance's value)."""
    text = (field.data or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) < 7) or not low <= int(text) <= high:
        raise ValidationError(message)
    return int(text)


class SettingsForm(FlaskForm):
    name = StringField(
        _l("Nom de l'organisation"),
        filters=[name_filter],
        validators=[
            DataRequired(_l("Donnez un nom à l'organisation.")),
            Length(max=200, message=_l("200 caractères au plus.")),
        ],
    )
    require_2fa = BooleanField(_l("Exiger la double authentification pour tous les membres"))
    session_idle_minutes = StringField(_l("Fermer une session inactive après (minutes)"))
    session_absolute_hours = StringField(_l("Demander une nouvelle connexion après (heures)"))
    default_locale = SelectField(
        _l("Langue par défaut des membres"),
        choices=locale_choices,
        default="",
        validate_choice=False,  # checked below, with a message of ours
    )

    def validate_default_locale(self, field: SelectField) -> None:
        if field.data not in {value for value, _label in locale_choices()}:
            raise ValidationError(_l("Langue inconnue : choisissez le français ou l'anglais."))

    # The instance's limits are a ceiling: an organisation may shorten its sessions, never
    # keep them open longer than the operator allows (AAL2's 12 hours by default).
    def validate_session_idle_minutes(self, field: StringField) -> None:
        high = current_app.config["SESSION_IDLE_MINUTES"]
        message = _l(
            "Un nombre de minutes entre %(low)d et %(high)d (le maximum de cette instance).",
            low=IDLE_MIN_MINUTES,
            high=high,
        )
        self.idle_minutes = _bounded(field, IDLE_MIN_MINUTES, high, message)

    def validate_session_absolute_hours(self, field: StringField) -> None:
        high = current_app.config["SESSION_ABSOLUTE_HOURS"]
        message = _l(
            "Un nombre d'heures entre %(low)d et %(high)d (le maximum de cette instance).",
            low=ABSOLUTE_MIN_HOURS,
            high=high,
        )
        self.absolute_hours = _bounded(field, ABSOLUTE_MIN_HOURS, high, message)
