"""Small values kept so that the server alone can read them back (AES-256-GCM).

The key is derived by HKDF from the password pepper under a label of its own, so each use
(``label``) has a distinct key, and the associated data binds a ciphertext to its row: one
copied into another row, or read under another label, fails authentication.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_VERSION = "v1"


def _key(label: str) -> bytes:
    pepper = current_app.config["PASSWORD_PEPPER"]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"coffre/{label}/{_VERSION}".encode()).derive(
        pepper.encode() if isinstance(pepper, str) else pepper
    )


def seal(value: str, *, label: str, bound_to: str) -> str:
    nonce = os.urandom(12)
    ciphertext = AESGCM(_key(label)).encrypt(nonce, value.encode(), bound_to.encode())
    return _VERSION + ":" + base64.urlsafe_b64encode(nonce + ciphertext).decode()


def unseal(sealed: str, *, label: str, bound_to: str) -> str:
    """Raises ValueError on an unknown format and cryptography's InvalidTag on tampering."""
    version, _, payload = sealed.partition(":")
    if version != _VERSION:
        raise ValueError("unknown sealed value format")
    raw = base64.urlsafe_b64decode(payload)
    return AESGCM(_key(label)).decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
