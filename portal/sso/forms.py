from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, SelectMultipleField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from portal.security.permissions import Role

DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_DOMAINS = 50


def split_domains(text: str | None) -> list[str]:
    return sorted({part.strip().lower().lstrip("@") for part in re.split(r"[\s,;]+", text or "") if part.strip()})


class PolicyForm(FlaskForm):
    allowed_providers = SelectMultipleField(
        _l("Fournisseurs autorisés"),
        choices=[],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=True,
    )
    allowed_domains = TextAreaField(_l("Domaines e-mail autorisés"), validators=[Length(max=5000)])
    jit_enabled = BooleanField(_l("Créer le compte à la première connexion (domaines autorisés seulement)"))
    # Admin is not offered: a first sign-in never makes an administrator.
    default_role = SelectField(
        _l("Rôle des comptes créés"),
        choices=lambda: [
            SelectChoice(Role.READER.value, str(_l("Lecteur"))),
            SelectChoice(Role.CONTRIBUTOR.value, str(_l("Contributeur"))),
        ],
        default=Role.READER.value,
    )
    sso_required = BooleanField(_l("SSO obligatoire (sauf pour les administrateurs)"))
    trust_provider_mfa = BooleanField(_l("Accepter la double authentification du fournisseur"))

    def validate_allowed_domains(self, field) -> None:
        domains = split_domains(field.data)
        if len(domains) > MAX_DOMAINS:
            raise ValidationError(_l("Au plus %(count)d domaines.", count=MAX_DOMAINS))
        bad = [d for d in domains if not DOMAIN.match(d)]
        if bad:
            raise ValidationError(_l("Domaine invalide : %(domain)s", domain=bad[0][:80]))
