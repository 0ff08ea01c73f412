"""Positive validation of API input: known fields only, typed, bounded, no NUL bytes.

Unknown fields are ignored, so a client cannot set what the server decides
(organisation, role, digest, size…).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request
from flask_babel import gettext as _

from portal.api.problems import ApiProblem, validation_problem
from portal.security.text import clean_name

MAX_ID = 2**31 - 1
# JSON and form bodies are a few hundred bytes; only the upload routes raise this.
MAX_BODY = 1024 * 1024


def json_or_form_body() -> Mapping[str, Any]:
    """The request body as a mapping: a JSON object or a url-encoded form."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        try:
            data = request.get_json(silent=True)
        except RecursionError:
            # silent=True only swallows ValueError; deep nesting exhausts the parser's stack.
            raise ApiProblem(400, _("Le corps JSON est imbriqué trop profondément.")) from None
        if not isinstance(data, dict):
            raise ApiProblem(400, _("Le corps doit être un objet JSON."))
        return data
    if mimetype == "application/x-www-form-urlencoded":
        return request.form
    raise ApiProblem(415, _("Envoyez application/json ou application/x-www-form-urlencoded."))


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Validator:
    """Collect every field error, then raise one 422 listing them all."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: list[dict[str, str]] = []

    def error(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def string(self, field: str, *, required: bool = False, max_length: int = 255) -> str | None:
        value = self.data.get(field)
        if value is None or value == "":
            if required:
                self.error(field, _("Ce champ est obligatoire."))
            return None
        if not isinstance(value, str):
            self.error(field, _("Une chaîne de caractères est attendue."))
            return None
        if "\x00" in value:
            self.error(field, _("Caractère nul interdit."))
            return None
        if not _is_utf8(value):
            # JSON "\udcff" escapes decode to lone surrogates, which no database or hash accepts.
            self.error(field, _("Texte Unicode invalide."))
            return None
        if len(value) > max_length:
            self.error(field, _("%(max)d caractères au plus.", max=max_length))
            return None
        return value

    def name(self, field: str, *, required: bool = False, max_length: int = 255) -> str | None:
        """A display name, cleaned like every name (``clean_name``).

        A name with nothing visible left counts as absent, as a blank one always did: the
        schema accepts any string there, so refusing it would reject schema-valid input.
        """
        value = self.string(field, required=required, max_length=max_length)
        cleaned = clean_name(value)
        if value is not None and not cleaned and required:
            self.error(field, _("Ce champ est obligatoire."))
        return cleaned or None

    def integer(self, field: str, *, required: bool = False, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
        value = self.data.get(field)
        if value is None or value == "":
            if required:
                self.error(field, _("Ce champ est obligatoire."))
            return None
        if isinstance(value, bool):
            value = None
        elif isinstance(value, str):
            value = int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else None
        elif isinstance(value, float):
            # JSON Schema counts 56.0 as an integer; anything else with a fraction is not.
            value = int(value) if value.is_integer() and abs(value) <= MAX_ID else None
        elif not isinstance(value, int):
            value = None
        if value is None:
            self.error(field, _("Un nombre entier est attendu."))
            return None
        if not minimum <= value <= maximum:
            self.error(field, _("Entre %(min)d et %(max)d.", min=minimum, max=maximum))
            return None
        return value

    def boolean(self, field: str, *, default: bool = False) -> bool:
        value = self.data.get(field)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "false", "0"}:
            return value.strip().lower() in {"true", "1"}
        self.error(field, _("Valeurs acceptées : true, false, 1, 0."))
        return default

    def check(self) -> None:
        if self.errors:
            raise validation_problem(self.errors)
