from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length

from portal.security.text import name_filter


def role_choices() -> list[SelectChoice]:
    return [
        SelectChoice("lecteur", str(_l("Lecteur : consulter et télécharger"))),
        SelectChoice(
            "contributeur", str(_l("Contributeur : lecteur + déposer, modifier, ranger, mettre à la corbeille"))
        ),
        SelectChoice("admin", str(_l("Administrateur : tout, y compris les membres et les réglages"))),
    ]


ROLE_LABELS = {
    "lecteur": _l("Lecteur"),
    "contributeur": _l("Contributeur"),
    "admin": _l("Administrateur"),
}


class InviteForm(FlaskForm):
    email = EmailField(_l("Adresse e-mail"), validators=[DataRequired(), Email(), Length(max=254)])
    name = StringField(_l("Nom"), filters=[name_filter], validators=[DataRequired(), Length(max=120)])
    role = SelectField(_l("Rôle"), choices=role_choices, default="lecteur")


class RoleForm(FlaskForm):
    role = SelectField(_l("Rôle"), choices=role_choices)
