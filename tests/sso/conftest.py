"""Two real OpenID providers on loopback (oidc-provider-mock), acting as two issuers.

Each one can be told to tamper with the next ID token its token endpoint returns, so the
hostile cases (wrong audience, expired, alg=none, another issuer's key...) come from a
real server over HTTP, through the same code path as a genuine sign-in.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import flask
import pytest
import requests
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.auth.support import clock, inbox, smtp_server  # noqa: F401
from tests.conftest import csrf_token_from

CLIENT_ID = "coffre-test-client"
CLIENT_SECRET = "not-a-real-secret-but-long-enough"
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "attacker"})


@dataclass
class ProviderServer:
    name: str
    base: str
    tamper: dict = field(default_factory=dict)

    def set_user(self, sub: str, claims: dict) -> None:
        assert requests.put(f"{self.base}/users/{sub}", json=claims, timeout=5).status_code == 204

    def authorize(self, authorization_url: str, sub: str) -> str:
        """Sign ``sub`` in at the provider; return the redirect back to Coffre."""
        response = requests.post(authorization_url, data={"sub": sub}, allow_redirects=False, timeout=5)
        assert response.status_code == 302, response.text
        return response.headers["Location"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _tampered(id_token: str, mode: str, own_key: dict) -> str:
    header_part, payload_part, _sig = id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4)))
    header = json.loads(base64.urlsafe_b64decode(header_part + "=" * (-len(header_part) % 4)))
    key = RSAKey.import_key(own_key)
    kid = header.get("kid") or own_key.get("kid")
    signed_header = {"alg": "RS256", **({"kid": kid} if kid else {})}
    now = int(time.time())
    if mode == "aud":
        claims["aud"] = "someone-else"
    elif mode == "expired":
        claims["iat"], claims["exp"] = now - 7200, now - 3600
    elif mode == "nonce":
        claims["nonce"] = "not-the-nonce-we-sent"
    elif mode == "issuer":
        claims["iss"] = "https://evil.example"
    elif mode == "none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    elif mode == "hs256":
        return jwt.encode({**signed_header, "alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET))
    elif mode == "foreign_key":
        return jwt.encode({"alg": "RS256", "kid": OTHER_KEY.kid}, claims, OTHER_KEY)
    elif mode == "foreign_key_same_kid":
        return jwt.encode(signed_header, claims, OTHER_KEY)
    elif mode.startswith("claims:"):
        claims.update(json.loads(mode[len("claims:") :]))
    return jwt.encode(signed_header, claims, key)


def _start(name: str) -> tuple[ProviderServer, werkzeug.serving.BaseWSGIServer, threading.Thread]:
    import oidc_provider_mock

    provider_app = oidc_provider_mock.app(require_nonce=True)
    server_info: dict = {}

    @provider_app.after_request
    def tamper_token(response: flask.Response) -> flask.Response:
        mode = server_info["provider"].tamper.pop("mode", None)
        if mode is None or flask.request.path != "/oauth2/token" or response.status_code != 200:
            if mode is not None:
                server_info["provider"].tamper["mode"] = mode
            return response
        body = response.get_json()
        storage = flask.g.oidc_provider_mock_storage
        body["id_token"] = _tampered(body["id_token"], mode, storage.jwk.as_dict(is_private=True))
        response.set_data(json.dumps(body))
        return response

    server = werkzeug.serving.make_server("127.0.0.1", 0, provider_app, threaded=True)
    provider = ProviderServer(name=name, base=f"http://127.0.0.1:{server.server_port}")
    server_info["provider"] = provider
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return provider, server, thread


@pytest.fixture(scope="session")
def providers() -> Iterator[dict[str, ProviderServer]]:
    started = [_start("alpha"), _start("beta")]
    yield {p.name: p for p, _s, _t in started}
    for _p, server, thread in started:
        server.shutdown()
        thread.join(5)


def provider_config(servers: dict[str, ProviderServer]) -> list[dict]:
    return [
        {
            "name": s.name,
            "label": s.name.capitalize(),
            "issuer": s.base,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        for s in servers.values()
    ]


@pytest.fixture
def app(app_factory, smtp_server, clock, providers):  # noqa: F811
    from tests.auth.support import account_config

    _inbox, port = smtp_server
    for server in providers.values():
        server.tamper.clear()
    app = app_factory(**account_config(port, clock), COFFRE_SSO_PROVIDERS=provider_config(providers))
    with app.app_context():
        yield app


def start_flow(client, name: str) -> str:
    page = client.get("/auth/login").get_data(as_text=True)
    response = client.post(f"/auth/sso/{name}/start", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def callback_path(location: str, *, as_provider: str | None = None) -> str:
    parsed = urlparse(location)
    path = parsed.path
    if as_provider:
        path = path.replace(path.split("/")[3], as_provider, 1)
    return f"{path}?{parsed.query}"


def sso_sign_in(client, server: ProviderServer, sub: str, claims: dict, *, tamper: str | None = None):
    """The whole dance: Coffre → provider → Coffre's callback. Returns the callback response."""
    server.set_user(sub, claims)
    authorization_url = start_flow(client, server.name)
    location = server.authorize(authorization_url, sub)
    if tamper:
        server.tamper["mode"] = tamper
    return client.get(callback_path(location))
