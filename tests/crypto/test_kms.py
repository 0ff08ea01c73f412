"""The KMS provider against moto's KMS server on loopback (a real HTTP round trip)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from portal.crypto.errors import KeyConfigError, KeyUnavailable
from portal.crypto.keys import KmsKeyProvider, build_key_provider

CONTEXT = {"org": "1", "file": "10", "version": "100"}


@pytest.fixture(scope="module")
def kms_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto accepts any credentials; these only keep boto3 from looking for real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")


@pytest.fixture
def kms_client(kms_endpoint: str, aws_env: None):
    return boto3.client("kms", region_name="eu-west-3", endpoint_url=kms_endpoint)


def make_key(kms_client) -> str:
    return kms_client.create_key(Description="coffre test master key")["KeyMetadata"]["KeyId"]


def test_generate_unwrap_round_trip(kms_endpoint: str, kms_client) -> None:
    key_id = make_key(kms_client)
    provider = build_key_provider(
        {"COFFRE_KEY_PROVIDER": "kms", "COFFRE_KMS_KEY_ID": key_id, "COFFRE_KMS_ENDPOINT_URL": kms_endpoint}
    )
    assert isinstance(provider, KmsKeyProvider)
    key, wrapped, master_key_id = provider.generate_data_key(CONTEXT)
    assert len(key) == 32 and key not in wrapped
    assert master_key_id.startswith("kms:") and key_id in master_key_id
    assert master_key_id == provider.primary_id
    assert provider.unwrap(wrapped, master_key_id, dict(CONTEXT)) == key


def test_context_mismatch_and_tampering_fail_cleanly(kms_endpoint: str, kms_client) -> None:
    provider = KmsKeyProvider(make_key(kms_client), endpoint_url=kms_endpoint)
    _key, wrapped, master_key_id = provider.generate_data_key(CONTEXT)
    with pytest.raises(KeyUnavailable, match="KMS refused decrypt"):
        provider.unwrap(wrapped, master_key_id, {**CONTEXT, "file": "11"})
    with pytest.raises(KeyUnavailable):
        provider.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), master_key_id, CONTEXT)
    with pytest.raises(KeyUnavailable, match="another provider"):
        provider.unwrap(wrapped, "local:1", CONTEXT)


def test_rewrap_under_another_key(kms_endpoint: str, kms_client) -> None:
    old = KmsKeyProvider(make_key(kms_client), endpoint_url=kms_endpoint)
    key, wrapped, master_key_id = old.generate_data_key(CONTEXT)
    new = KmsKeyProvider(make_key(kms_client), endpoint_url=kms_endpoint)
    new_wrapped, new_id = new.rewrap(wrapped, master_key_id, CONTEXT)
    assert new_id == new.primary_id != master_key_id
    assert new.unwrap(new_wrapped, new_id, CONTEXT) == key


def test_unreachable_kms_is_key_unavailable(aws_env: None) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = KmsKeyProvider("some-key", endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(KeyUnavailable, match="unreachable"):
        provider.generate_data_key(CONTEXT)


def test_envelope_on_kms_and_moving_to_a_new_kms_key(kms_endpoint: str, kms_client, app_factory, make_org) -> None:
    """The app configured for KMS: data keys through the envelope services, then a change of
    COFFRE_KMS_KEY_ID followed by the rewrap that `keys rotate` runs."""
    from portal.crypto import envelope
    from portal.crypto.errors import KeyShredded
    from portal.crypto.models import DataKey
    from portal.extensions import db

    first_key, second_key = make_key(kms_client), make_key(kms_client)
    settings = {"COFFRE_KEY_PROVIDER": "kms", "COFFRE_KMS_ENDPOINT_URL": kms_endpoint}
    app = app_factory(COFFRE_KMS_KEY_ID=first_key, **settings)
    with app.app_context():
        org_id = make_org().id
        made = []
        for n in range(1, 4):
            ctx = {"org": str(org_id), "file": str(n), "version": str(n)}
            row, key = envelope.new_data_key(org_id, ctx)
            made.append((row.id, ctx, key))
        db.session.commit()
        assert {db.session.get(DataKey, row_id).master_key_id for row_id, _c, _k in made} == {
            envelope.get_key_provider().primary_id
        }

    moved = app_factory(COFFRE_KMS_KEY_ID=second_key, **settings)
    with moved.app_context():
        primary = envelope.rotate_master_key()
        assert second_key in primary
        assert envelope.rewrap_all(batch_size=2, on_batch=lambda _n: db.session.commit()) == 3
        db.session.commit()
        for row_id, ctx, key in made:
            row = db.session.get(DataKey, row_id)
            assert row.master_key_id == primary
            assert envelope.open_data_key(row, ctx) == key
        row_id, ctx, _key = made[0]
        envelope.shred_data_key(db.session.get(DataKey, row_id), file_id=1, version_id=1, reason="file.purged")
        db.session.commit()
        with pytest.raises(KeyShredded):
            envelope.open_data_key(db.session.get(DataKey, row_id), ctx)
        with pytest.raises(KeyConfigError, match="KMS keys are managed in KMS"):
            envelope.retire_master_key(1)
