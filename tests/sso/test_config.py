"""COFFRE_SSO_PROVIDERS: parsing, refusals with a clear line, secrets never printed,
discovery fetched at start-up and again when it failed, Microsoft's tenant template."""

from __future__ import annotations

import logging

import pytest

from portal.sso import providers as sso
from tests.sso.conftest import CLIENT_SECRET

GOOGLE = {
    "name": "google",
    "label": "Google",
    "issuer": "https://accounts.google.com",
    "client_id": "c",
    "client_secret": CLIENT_SECRET,
}
MICROSOFT = {
    "name": "microsoft",
    "label": "Microsoft",
    "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
    "client_id": "c",
    "client_secret": CLIENT_SECRET,
}


def test_parses_a_json_list():
    import json

    parsed = sso.parse_providers(json.dumps([GOOGLE, MICROSOFT]))
    assert [p.name for p in parsed] == ["google", "microsoft"]
    assert parsed[1].discovery_url == "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    assert CLIENT_SECRET not in repr(parsed)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"name": "x"}', "must be a JSON list"),
        ([{"name": "g"}], "lacks issuer, client_id, client_secret"),
        ([{**GOOGLE, "name": "Bad Name"}], "name must be"),
        ([{**GOOGLE, "issuer": "http://accounts.example"}], "https URL"),
        ([GOOGLE, GOOGLE], "two providers named"),
    ],
)
def test_bad_configuration_stops_with_a_clear_line(raw, message):
    with pytest.raises(sso.ProviderConfigError, match=message) as error:
        sso.parse_providers(raw)
    assert CLIENT_SECRET not in str(error.value)


def test_microsoft_issuer_template_matches_only_the_tokens_own_tenant():
    [microsoft] = sso.parse_providers([MICROSOFT])
    tid = "9188040d-6c67-4c5b-b112-36a304b66dad"
    iss = f"https://login.microsoftonline.com/{tid}/v2.0"
    assert sso.issuer_matches(microsoft, iss, {"tid": tid})
    assert not sso.issuer_matches(microsoft, iss, {"tid": "00000000-0000-0000-0000-000000000000"})
    assert not sso.issuer_matches(microsoft, iss, {})
    assert not sso.issuer_matches(microsoft, "https://login.microsoftonline.com/common/v2.0", {"tid": tid})


def test_discovery_failure_at_start_up_is_retried_on_use(app_factory, providers, caplog):
    down = {
        "name": "down",
        "label": "Down",
        "issuer": "http://127.0.0.1:9",
        "client_id": "c",
        "client_secret": CLIENT_SECRET,
    }
    with caplog.at_level(logging.WARNING, logger="coffre.sso"):
        app = app_factory(COFFRE_SSO_PROVIDERS=[down])
    assert any("sso.discovery_failed" in r.getMessage() for r in caplog.records)
    assert all(CLIENT_SECRET not in r.getMessage() for r in caplog.records)
    client = app.test_client()
    from tests.conftest import csrf_token_from

    page = client.get("/auth/login").get_data(as_text=True)
    assert 'data-sso="down"' in page
    response = client.post("/auth/sso/down/start", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 503  # a clear refusal, and the next use tries again
    # The working provider's discovery happened at start-up.
    app = app_factory(COFFRE_SSO_PROVIDERS=[{**down, "name": "alpha", "issuer": providers["alpha"].base}])
    with app.app_context():
        assert "_loaded_at" in sso.client(sso.get("alpha")).server_metadata


def test_each_app_has_its_own_clients(app_factory, providers):
    from tests.sso.conftest import provider_config

    [alpha, beta] = provider_config(providers)
    first = app_factory(COFFRE_SSO_PROVIDERS=[alpha])
    second = app_factory(COFFRE_SSO_PROVIDERS=[{**beta, "name": "alpha"}])
    for app, issuer in ((first, alpha["issuer"]), (second, beta["issuer"])):
        with app.app_context():
            assert sso.client(sso.get("alpha")).load_server_metadata()["issuer"] == issuer
