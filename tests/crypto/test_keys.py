"""The local master keyring: creation, wrapping, wrong keys, rotation and retirement."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from portal.crypto.errors import KeyConfigError, KeyUnavailable
from portal.crypto.keys import LocalKeyProvider, build_key_provider

CONTEXT = {"org": "1", "file": "10", "version": "100"}


def test_keyring_is_created_0600_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "master.key"
    provider = LocalKeyProvider(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    payload = json.loads(path.read_text())
    assert payload["primary"] == 1 and payload["retired"] == []
    assert len(base64.b64decode(payload["keys"]["1"])) == 32
    assert provider.primary_id == "local:1"
    # A second provider reads the same keyring instead of generating another one.
    key, wrapped, master_key_id = provider.generate_data_key(CONTEXT)
    assert LocalKeyProvider(path).unwrap(wrapped, master_key_id, CONTEXT) == key


def test_wrap_round_trip_and_binding_to_context(tmp_path: Path) -> None:
    provider = LocalKeyProvider(tmp_path / "master.key")
    key, wrapped, master_key_id = provider.generate_data_key(CONTEXT)
    assert len(key) == 32 and key not in wrapped and master_key_id == "local:1"
    assert provider.unwrap(wrapped, master_key_id, dict(CONTEXT)) == key
    with pytest.raises(KeyUnavailable):
        provider.unwrap(wrapped, master_key_id, {**CONTEXT, "version": "101"})
    with pytest.raises(KeyUnavailable):
        provider.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), master_key_id, CONTEXT)
    with pytest.raises(KeyUnavailable):
        provider.unwrap(wrapped, "local:7", CONTEXT)
    with pytest.raises(KeyUnavailable):
        provider.unwrap(wrapped, "kms:arn:aws:kms:x", CONTEXT)


def test_wrong_master_key_fails_cleanly(tmp_path: Path) -> None:
    _key, wrapped, master_key_id = LocalKeyProvider(tmp_path / "a.key").generate_data_key(CONTEXT)
    other = LocalKeyProvider(tmp_path / "b.key")
    with pytest.raises(KeyUnavailable) as caught:
        other.unwrap(wrapped, master_key_id, CONTEXT)
    assert "wrong master key" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_master_key_from_environment(tmp_path: Path) -> None:
    env_key = base64.b64encode(os.urandom(32)).decode()
    provider = LocalKeyProvider(tmp_path / "unused.key", env_key)
    key, wrapped, master_key_id = provider.generate_data_key(CONTEXT)
    assert master_key_id == "local:1"
    assert LocalKeyProvider(None, env_key).unwrap(wrapped, master_key_id, CONTEXT) == key
    assert not (tmp_path / "unused.key").exists()
    with pytest.raises(KeyConfigError, match="cannot be rotated"):
        provider.rotate()
    with pytest.raises(KeyConfigError, match="base64 of 32"):
        LocalKeyProvider(None, base64.b64encode(b"short").decode())


def test_corrupt_keyring_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text('{"primary": 2, "keys": {"1": "AAAA"}}')
    with pytest.raises(KeyConfigError, match="not valid"):
        LocalKeyProvider(path)
    path.write_text("not json")
    with pytest.raises(KeyConfigError, match="not valid"):
        LocalKeyProvider(path)


def test_rotation_keeps_old_versions_readable_and_rewrap_moves_keys(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    provider = LocalKeyProvider(path)
    old = [provider.generate_data_key({**CONTEXT, "version": str(n)}) for n in range(3)]
    assert provider.rotate() == "local:2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for n, (key, wrapped, master_key_id) in enumerate(old):
        context = {**CONTEXT, "version": str(n)}
        assert provider.unwrap(wrapped, master_key_id, context) == key
        new_wrapped, new_id = provider.rewrap(wrapped, master_key_id, context)
        assert new_id == "local:2" and new_wrapped != wrapped
        assert provider.unwrap(new_wrapped, new_id, context) == key
    assert provider.generate_data_key(CONTEXT)[2] == "local:2"


def test_another_process_rotation_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    worker, cli = LocalKeyProvider(path), LocalKeyProvider(path)
    cli.rotate()
    _key, wrapped, master_key_id = worker.generate_data_key(CONTEXT)
    assert master_key_id == "local:2"
    assert cli.unwrap(wrapped, master_key_id, CONTEXT)


def test_retire(tmp_path: Path) -> None:
    provider = LocalKeyProvider(tmp_path / "master.key")
    _key, wrapped, master_key_id = provider.generate_data_key(CONTEXT)
    with pytest.raises(KeyConfigError, match="primary"):
        provider.retire(1)
    provider.rotate()
    provider.retire(1)
    assert provider.versions() == {"primary": 2, "active": [2], "retired": [1]}
    assert list(json.loads((tmp_path / "master.key").read_text())["keys"]) == ["2"]
    with pytest.raises(KeyUnavailable, match="retired"):
        provider.unwrap(wrapped, master_key_id, CONTEXT)
    with pytest.raises(KeyConfigError):
        provider.retire(1)
    # Retired version numbers are never reused.
    assert provider.rotate() == "local:3"


def test_provider_selection(tmp_path: Path) -> None:
    assert isinstance(build_key_provider({"COFFRE_MASTER_KEY_FILE": str(tmp_path / "m.key")}), LocalKeyProvider)
    with pytest.raises(KeyConfigError, match="local' or 'kms"):
        build_key_provider({"COFFRE_KEY_PROVIDER": "vault"})
    with pytest.raises(KeyConfigError, match="COFFRE_KMS_KEY_ID"):
        build_key_provider({"COFFRE_KEY_PROVIDER": "kms"})


def test_context_must_be_strings(tmp_path: Path) -> None:
    provider = LocalKeyProvider(tmp_path / "master.key")
    for bad in ({}, {"org": 1}, None):
        with pytest.raises(ValueError):
            provider.generate_data_key(bad)  # type: ignore[arg-type]


def test_loose_keyring_permissions_refused_in_production(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "master.key"
    LocalKeyProvider(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        build_key_provider(
            {"COFFRE_KEY_PROVIDER": "local", "COFFRE_MASTER_KEY_FILE": str(path), "COFFRE_ENV": "production"}
        )
    # Outside production it still starts, with a warning.
    provider = build_key_provider({"COFFRE_MASTER_KEY_FILE": str(path), "COFFRE_ENV": "development"})
    assert provider.primary_id == "local:1"
    assert "readable beyond its owner" in caplog.text
    os.chmod(path, 0o600)
    assert build_key_provider({"COFFRE_MASTER_KEY_FILE": str(path), "COFFRE_ENV": "production"}).primary_id == "local:1"
