"""Keyed hashes of identities, so the journal's chain need not cover names or e-mails.

A journal entry (hash version 2) chains ``HMAC(instance key, label)`` instead of the label
itself: the label can later be replaced by a pseudonym without breaking the chain, and
nobody without the instance key can tell which name a digest stands for (an unkeyed hash
of an e-mail address is reversed by trying addresses). The key is derived by HKDF from the
password pepper under a label of its own, like ``portal.security.sealed``: the pepper is
already the instance secret that must never change (passwords depend on it).

A pseudonymised label carries a *proof*, ``HMAC(key, entry, original digest, pseudonym)``:
only the server can produce it, so a label edited in the database is still caught by
``journal verify`` while one replaced by the pseudonymisation is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_VERSION = "v1"


def _key(purpose: str) -> bytes:
    pepper = current_app.config["PASSWORD_PEPPER"]
    return _derive(pepper.encode() if isinstance(pepper, str) else pepper, purpose)


@lru_cache(maxsize=16)
def _derive(pepper: bytes, purpose: str) -> bytes:
    # Cached: every journal entry written or verified asks for the key.
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"coffre/journal-{purpose}/{_VERSION}".encode()
    ).derive(pepper)


def identity_digest(text: str) -> str:
    """The keyed digest of a label, the value an entry's hash covers in its place."""
    return hmac.new(_key("identity"), text.encode(), hashlib.sha256).hexdigest()


def pseudonym_tag(organization_id: int, user_id: int) -> str:
    """A stable, unguessable tag for a departed member (the same on every rerun)."""
    return hmac.new(_key("pseudonym"), f"{organization_id}:{user_id}".encode(), hashlib.sha256).hexdigest()[:10]


def pseudonym_proof(entry_id: int, original_digest: str, pseudonym: str) -> str:
    """Binds one entry's replacement label to the digest of the label it replaced."""
    message = f"{entry_id}\n{original_digest}\n{pseudonym}".encode()
    return hmac.new(_key("proof"), message, hashlib.sha256).hexdigest()


def proof_matches(proof: str, entry_id: int, original_digest: str, pseudonym: str) -> bool:
    return hmac.compare_digest(proof, pseudonym_proof(entry_id, original_digest, pseudonym))
