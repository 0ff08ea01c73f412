"""Signed JSON documents with the instance's Ed25519 key (the journal checkpoints' key).

A document is ``{"body", "key_id", "public_key", "signature"}``; the signature covers the
canonical JSON of ``body`` (sorted keys, no spaces, UTF-8), as the backup manifests do.
The public key travels with it for offline reading, but ``verify_document`` trusts only
the key it is given (this instance's): a document re-signed with another key fails.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class SignatureInvalid(Exception):  # noqa: N818 - a verification outcome
    """The document is malformed, signed by another key, or altered."""


def canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_document(body: dict[str, Any]) -> dict[str, Any]:
    from portal.audit.checkpoints import key_id_of, signing_key

    key = signing_key()
    public = key.public_key()
    return {
        "body": body,
        "key_id": key_id_of(public),
        "public_key": base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode(),
        "signature": base64.b64encode(key.sign(canonical(body))).decode(),
    }


def instance_public_key() -> Ed25519PublicKey:
    from portal.audit.checkpoints import signing_key

    return signing_key().public_key()


def verify_document(document: Any, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The body of ``document`` once its signature by ``public_key`` is checked."""
    from portal.audit.checkpoints import key_id_of

    try:
        body = document["body"]
        signature = base64.b64decode(document["signature"], validate=True)
        key_id = document["key_id"]
    except (KeyError, TypeError, ValueError):
        raise SignatureInvalid("not a signed document") from None
    if not isinstance(body, dict) or key_id != key_id_of(public_key):
        raise SignatureInvalid("signed by another key")
    try:
        public_key.verify(signature, canonical(body))
    except InvalidSignature:
        raise SignatureInvalid("bad signature: the document was altered") from None
    return body
