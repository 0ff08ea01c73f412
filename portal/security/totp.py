"""TOTP secrets encrypted at rest (AES-256-GCM) and code matching by time step.

The key is derived by HKDF from the password pepper with its own label, so it is
distinct from the password key while needing no extra secret to deploy.
"""

from __future__ import annotations

import base64
import hmac
import os
from datetime import datetime

import pyotp
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

ISSUER = "Coffre"
STEP_SECONDS = 30
# One step either side tolerates clock drift; replay is refused by the stored last step.
DRIFT_STEPS = 1
_VERSION = b"v1"


def _key() -> bytes:
    secret = current_app.config.get("COFFRE_TOTP_KEY") or current_app.config["PASSWORD_PEPPER"]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"coffre/totp-secret/v1").derive(
        secret.encode() if isinstance(secret, str) else secret
    )


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits


def encrypt_secret(secret: str, user_id: int) -> str:
    nonce = os.urandom(12)
    ciphertext = AESGCM(_key()).encrypt(nonce, secret.encode(), f"user:{user_id}".encode())
    return _VERSION.decode() + ":" + base64.urlsafe_b64encode(nonce + ciphertext).decode()


def decrypt_secret(token: str, user_id: int) -> str:
    version, _, payload = token.partition(":")
    if version.encode() != _VERSION:
        raise ValueError("unknown TOTP secret format")
    raw = base64.urlsafe_b64decode(payload)
    return AESGCM(_key()).decrypt(raw[:12], raw[12:], f"user:{user_id}".encode()).decode()


def matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step whose code equals ``code`` within the drift window, else None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = int(at.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """An inline <svg> element (no data: URI, so the CSP needs nothing extra)."""
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#111", light="#fff", omitsize=False)
