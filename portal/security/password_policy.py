"""Password policy (NIST 800-63B): length and a common-password list, no composition rules."""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path

from flask_babel import gettext as _

MIN_LENGTH = 12
MAX_LENGTH = 1024
_LIST = Path(__file__).parent / "data" / "common_passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    with _LIST.open(encoding="utf-8") as handle:
        return frozenset(line.strip() for line in handle if line.strip())


def _canonical(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower()


def password_problems(password: str, email: str | None = None) -> list[str]:
    """Messages explaining why ``password`` is refused; empty when it is acceptable."""
    normalised = unicodedata.normalize("NFKC", password)
    if len(normalised) < MIN_LENGTH:
        return [_("Le mot de passe doit contenir au moins %(min)d caractères.", min=MIN_LENGTH)]
    if len(normalised) > MAX_LENGTH:
        return [_("Le mot de passe ne peut pas dépasser %(max)d caractères.", max=MAX_LENGTH)]
    canonical = _canonical(password)
    if canonical in common_passwords():
        return [_("Ce mot de passe fait partie des plus courants : choisissez-en un autre.")]
    if email:
        address = _canonical(email)
        if canonical in {address, address.split("@", 1)[0]}:
            return [_("Le mot de passe ne doit pas être votre adresse e-mail.")]
    return []
