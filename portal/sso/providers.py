"""The configured OpenID providers and the checks on their ID tokens.

Authlib's Flask client drives the redirect dance (state, PKCE S256, nonce, the code
exchange). The ID token is verified here rather than by Authlib's ``parse_id_token``:
that one trusts the algorithms the provider's discovery document advertises, and would
accept ``none`` or HS256 from a hostile or misconfigured provider.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app
from joserfc import jwt
from joserfc.errors import BadSignatureError, DecodeError, InvalidKeyIdError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import KeySet

log = logging.getLogger("coffre.sso")

# Asymmetric algorithms only: HS* would make the client secret a signing key shared
# with anyone who knows it, and "none" is no signature at all.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 60
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Microsoft's common/organizations endpoints publish this placeholder in "issuer"; each
# token carries its own tenant there, which must also be the token's "tid".
TENANT_PLACEHOLDER = "{tenantid}"


class ProviderConfigError(RuntimeError):
    pass


class IdTokenError(Exception):
    """An ID token that must not sign anyone in; ``reason`` is a short journal code."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    issuer: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret, even in a traceback
        return f"Provider({self.name!r}, issuer={self.issuer!r})"

    @property
    def discovery_url(self) -> str:
        base = self.issuer.replace(TENANT_PLACEHOLDER, "common")
        return base.rstrip("/") + "/.well-known/openid-configuration"


def parse_providers(raw: Any) -> list[Provider]:
    """Read ``COFFRE_SSO_PROVIDERS``: a JSON list (or an already decoded list)."""
    if raw in (None, "", []):
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise ProviderConfigError(f"COFFRE_SSO_PROVIDERS is not valid JSON ({error.msg})") from None
    if not isinstance(raw, list):
        raise ProviderConfigError("COFFRE_SSO_PROVIDERS must be a JSON list of providers")
    providers: list[Provider] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ProviderConfigError(f"COFFRE_SSO_PROVIDERS[{index}] must be an object")
        missing = [k for k in ("name", "issuer", "client_id", "client_secret") if not entry.get(k)]
        if missing:
            raise ProviderConfigError(f"COFFRE_SSO_PROVIDERS[{index}] lacks {', '.join(missing)}")
        name = str(entry["name"])
        if not NAME_PATTERN.match(name):
            raise ProviderConfigError(f"COFFRE_SSO_PROVIDERS[{index}].name must be lowercase letters, digits, - or _")
        issuer = str(entry["issuer"]).rstrip("/")
        if not (
            issuer.startswith("https://")
            or issuer.startswith("http://127.0.0.1")
            or issuer.startswith("http://localhost")
        ):
            raise ProviderConfigError(f"COFFRE_SSO_PROVIDERS[{index}].issuer must be an https URL")
        if any(p.name == name for p in providers):
            raise ProviderConfigError(f"COFFRE_SSO_PROVIDERS has two providers named {name!r}")
        providers.append(
            Provider(
                name=name,
                label=str(entry.get("label") or name),
                issuer=issuer,
                client_id=str(entry["client_id"]),
                client_secret=str(entry["client_secret"]),
            )
        )
    return providers


def init_app(app: Flask) -> None:
    providers = parse_providers(app.config.get("COFFRE_SSO_PROVIDERS"))
    app.extensions["coffre_sso"] = {p.name: p for p in providers}
    # One registry per app: Authlib caches clients (and their discovery documents) in it,
    # and two apps in one process (tests, or two configurations) must not share them.
    oauth = OAuth(app)
    app.extensions["coffre_sso_oauth"] = oauth
    for provider in providers:
        oauth.register(
            provider.name,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            server_metadata_url=provider.discovery_url,
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256", "timeout": 10},
        )
        with app.app_context():
            load_metadata(provider)


def configured() -> list[Provider]:
    return list(current_app.extensions.get("coffre_sso", {}).values())


def get(name: str) -> Provider | None:
    return current_app.extensions.get("coffre_sso", {}).get(name)


def client(provider: Provider):
    return current_app.extensions["coffre_sso_oauth"].create_client(provider.name)


def load_metadata(provider: Provider) -> dict[str, Any] | None:
    """The discovery document, fetched at start-up and again on use while it failed."""
    try:
        metadata = client(provider).load_server_metadata()
    except Exception as error:  # a provider that is down must not stop Coffre
        log.warning("sso.discovery_failed provider=%s error=%s", provider.name, type(error).__name__)
        return None
    endpoint = metadata.get("authorization_endpoint")
    if isinstance(endpoint, str):
        origin = _origin(endpoint)
        if origin:
            current_app.config.setdefault("CSP_FORM_ACTION_SOURCES", set()).add(origin)
    return metadata


def _origin(url: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or any(c in url for c in " ;,'\""):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def issuer_matches(provider: Provider, iss: Any, claims: dict[str, Any]) -> bool:
    if not isinstance(iss, str):
        return False
    if TENANT_PLACEHOLDER not in provider.issuer:
        return iss == provider.issuer
    tid = claims.get("tid")
    if not isinstance(tid, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", tid):
        return False
    return iss == provider.issuer.replace(TENANT_PLACEHOLDER, tid)


def _decode(id_token: str, keys: dict[str, Any], algorithms: list[str]):
    return jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=algorithms)


def verify_id_token(provider: Provider, id_token: Any, nonce: str | None, now: float | None = None) -> dict[str, Any]:
    """Check signature, iss, aud, azp, exp, iat and nonce; return the claims."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        raise IdTokenError("malformed_token")
    app_client = client(provider)
    metadata = app_client.load_server_metadata()
    advertised = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in advertised if a in ALLOWED_ALGORITHMS]
    if not algorithms:
        raise IdTokenError("bad_algorithm")
    try:
        try:
            token = _decode(id_token, app_client.fetch_jwk_set(), algorithms)
        except (InvalidKeyIdError, BadSignatureError, ValueError):
            # The provider may have rotated its keys (a new kid, or a token without kid that
            # the cached key cannot verify): fetch the JWKS once more, never more.
            token = _decode(id_token, app_client.fetch_jwk_set(force=True), algorithms)
    except UnsupportedAlgorithmError:
        raise IdTokenError("bad_algorithm") from None
    except BadSignatureError:
        raise IdTokenError("bad_signature") from None
    except (InvalidKeyIdError, ValueError):
        raise IdTokenError("unknown_key") from None
    except (DecodeError, JoseError):
        raise IdTokenError("malformed_token") from None
    if token.header.get("alg") not in ALLOWED_ALGORITHMS:
        raise IdTokenError("bad_algorithm")
    claims = dict(token.claims)
    now = time.time() if now is None else now
    if not issuer_matches(provider, claims.get("iss"), claims):
        raise IdTokenError("wrong_issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if provider.client_id not in audiences:
        raise IdTokenError("wrong_audience")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
        raise IdTokenError("wrong_audience")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or exp < now - LEEWAY_SECONDS:
        raise IdTokenError("expired")
    if not isinstance(iat, (int, float)) or iat > now + LEEWAY_SECONDS:
        raise IdTokenError("bad_iat")
    if nonce is None or claims.get("nonce") != nonce:
        raise IdTokenError("wrong_nonce")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise IdTokenError("malformed_token")
    return claims


def unverified_claims(id_token: Any) -> dict[str, Any]:
    """The payload without any check, for routing a failure to a journal and nothing else."""
    import base64

    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return {}
    try:
        payload = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def template_context() -> dict[str, Any]:
    return {"sso_providers": configured()}
