"""Password hashing: bcrypt over a keyed pre-hash.

bcrypt reads only 72 bytes; sixty-four characters of most scripts exceed that. Hashing
HMAC-SHA-256(pepper, NFKC(password)) first makes every character count, keeps the input
at a fixed 44 bytes, and means a stolen database alone cannot be brute-forced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata

import bcrypt
from flask import current_app

# A fixed dummy hash: checking it costs the same as a real one, so an unknown e-mail
# cannot be told apart from a wrong password by timing.
_DUMMY_HASH: bytes | None = None


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def _prehash(password: str, pepper: str) -> bytes:
    digest = hmac.new(pepper.encode(), normalise(password).encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str, *, pepper: str | None = None, rounds: int | None = None) -> str:
    config = current_app.config
    salt = bcrypt.gensalt(rounds=rounds or config["BCRYPT_ROUNDS"])
    return bcrypt.hashpw(_prehash(password, pepper or config["PASSWORD_PEPPER"]), salt).decode()


def verify_password(password: str, password_hash: str | None, *, pepper: str | None = None) -> bool:
    global _DUMMY_HASH
    pepper = pepper or current_app.config["PASSWORD_PEPPER"]
    candidate = _prehash(password, pepper)
    if not password_hash:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = bcrypt.hashpw(b"dummy", bcrypt.gensalt(current_app.config["BCRYPT_ROUNDS"]))
        bcrypt.checkpw(candidate, _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(candidate, password_hash.encode())
    except ValueError:
        return False
