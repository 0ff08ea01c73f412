"""Master keys: who wraps the data keys.

Two providers share one interface. ``LocalKeyProvider`` keeps a versioned keyring in a
file outside the database (0600, under instance/ by default) or takes one key from the
environment; ``KmsKeyProvider`` asks AWS KMS, which never hands out its master key. The
encryption context ({"org", "file", "version"}) is the AAD of the wrapping on both, so a
wrapped key copied onto another version does not open.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from portal.crypto.errors import KeyConfigError, KeyUnavailable

log = logging.getLogger(__name__)

DATA_KEY_SIZE = 32
WRAP_NONCE_SIZE = 12
LOCAL_PREFIX = "local:"
KMS_PREFIX = "kms:"


class KeyProvider(Protocol):
    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes, str]:
        """(plaintext 32-byte key, wrapped key, master_key_id)."""
        ...

    def unwrap(self, wrapped: bytes, master_key_id: str, context: dict[str, str]) -> bytes:
        """The plaintext data key; raises KeyUnavailable."""
        ...

    def rewrap(self, wrapped: bytes, master_key_id: str, context: dict[str, str]) -> tuple[bytes, str]:
        """The key wrapped under the current primary master key, and that key's id."""
        ...

    @property
    def primary_id(self) -> str:
        """The master_key_id new data keys are wrapped under."""
        ...


def canonical_context(context: dict[str, str]) -> bytes:
    """The exact bytes a wrapping is bound to; the context is validated on the way."""
    if not isinstance(context, dict) or not context:
        raise ValueError("an encryption context is a non-empty dict of strings")
    for name, value in context.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError("an encryption context is a non-empty dict of strings")
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------- local


@dataclass
class Keyring:
    primary: int
    keys: dict[int, bytes]
    retired: list[int] = field(default_factory=list)

    def to_json(self) -> bytes:
        payload = {
            "primary": self.primary,
            "keys": {str(version): base64.b64encode(key).decode() for version, key in sorted(self.keys.items())},
            "retired": sorted(self.retired),
        }
        return json.dumps(payload, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Keyring:
        try:
            payload = json.loads(raw)
            keys = {int(version): base64.b64decode(value, validate=True) for version, value in payload["keys"].items()}
            keyring = cls(int(payload["primary"]), keys, [int(v) for v in payload.get("retired", [])])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
            raise KeyConfigError(f"the master keyring {source} is not valid: {type(error).__name__}") from None
        if keyring.primary not in keyring.keys or any(len(key) != DATA_KEY_SIZE for key in keyring.keys.values()):
            raise KeyConfigError(f"the master keyring {source} is not valid: bad primary or key size")
        return keyring


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, content: bytes) -> Path:
    """Write ``content`` to a fresh 0600 file next to ``path`` and fsync it."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


class LocalKeyProvider:
    """A versioned keyring file ({"primary": n, "keys": {"n": base64}, "retired": [...]}), or a
    single key from COFFRE_MASTER_KEY (version 1, which the CLI cannot rotate: rotating it means
    moving to a keyring file)."""

    def __init__(
        self, keyring_path: Path | str | None = None, env_key: str | None = None, *, strict_permissions: bool = False
    ) -> None:
        self.path = Path(keyring_path) if keyring_path else None
        self.from_env = bool(env_key)
        # Production refuses a keyring others can read: the master key must not leak via a backup job's group.
        self.strict_permissions = strict_permissions
        self._stamp: tuple[int, int, int] | None = None
        if env_key:
            try:
                key = base64.b64decode(env_key, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != DATA_KEY_SIZE:
                raise KeyConfigError("COFFRE_MASTER_KEY must be the base64 of 32 random bytes")
            self._keyring = Keyring(1, {1: key})
        elif self.path is None:
            raise KeyConfigError("no master key: set COFFRE_MASTER_KEY_FILE or COFFRE_MASTER_KEY")
        else:
            self._keyring = self._load(create=True)

    # -- keyring file

    def _file_stamp(self) -> tuple[int, int, int]:
        assert self.path is not None
        info = self.path.stat()
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _load(self, create: bool = False) -> Keyring:
        assert self.path is not None
        if create and not self.path.exists():
            self._create()
        try:
            info = self.path.stat()
            raw = self.path.read_bytes()
        except OSError as error:
            raise KeyConfigError(f"cannot read the master keyring {self.path}: {error.strerror}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            if self.strict_permissions:
                raise KeyConfigError(
                    f"the master keyring {self.path} is accessible beyond its owner: chmod 600 it before starting"
                )
            log.warning("master keyring %s is readable beyond its owner; chmod 600 it", self.path)
        keyring = Keyring.from_json(raw, str(self.path))
        self._stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        return keyring

    def _create(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = _write_new_file(self.path, Keyring(1, {1: secrets.token_bytes(DATA_KEY_SIZE)}).to_json())
        try:
            # link() refuses to overwrite: of two processes starting together, one keyring wins.
            os.link(temp, self.path)
            fsync_dir(self.path.parent)
            log.info("generated a new master keyring at %s", self.path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()

    def _save(self, keyring: Keyring) -> None:
        assert self.path is not None
        temp = _write_new_file(self.path, keyring.to_json())
        os.replace(temp, self.path)
        fsync_dir(self.path.parent)
        self._keyring = keyring
        self._stamp = self._file_stamp()

    def _current(self) -> Keyring:
        """The keyring, reloaded when another process (the rotation CLI) changed the file."""
        if self.path is not None and not self.from_env:
            with contextlib.suppress(OSError):
                if self._file_stamp() != self._stamp:
                    self._keyring = self._load()
        return self._keyring

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[Keyring]:
        """Hold an advisory lock for a read-modify-write of the keyring (two rotations at once)."""
        if self.from_env or self.path is None:
            raise KeyConfigError(
                "the master key comes from COFFRE_MASTER_KEY and cannot be rotated here: "
                "move to a keyring file (COFFRE_MASTER_KEY_FILE) to rotate"
            )
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._load()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- the provider interface

    @property
    def primary_id(self) -> str:
        return f"{LOCAL_PREFIX}{self._current().primary}"

    def _master_key(self, master_key_id: str) -> bytes:
        if not master_key_id.startswith(LOCAL_PREFIX):
            raise KeyUnavailable(f"data key wrapped by another provider ({master_key_id.split(':')[0]})")
        try:
            version = int(master_key_id[len(LOCAL_PREFIX) :])
        except ValueError:
            raise KeyUnavailable("malformed master key id") from None
        keyring = self._current()
        if version not in keyring.keys:
            state = "retired" if version in keyring.retired else "unknown"
            raise KeyUnavailable(f"master key version {version} is {state}")
        return keyring.keys[version]

    @staticmethod
    def _wrap(key: bytes, master: bytes, context: dict[str, str]) -> bytes:
        nonce = secrets.token_bytes(WRAP_NONCE_SIZE)
        return nonce + AESGCM(master).encrypt(nonce, key, canonical_context(context))

    def reload(self) -> None:
        """Re-read the keyring file now, whatever its stamp says: before a wrapping is stored,
        a rotation or retirement by another process must be seen for certain."""
        if self.path is not None and not self.from_env:
            self._keyring = self._load()

    def wrap_under_primary(self, key: bytes, context: dict[str, str]) -> tuple[bytes, str]:
        """Wrap a plaintext data key under the current primary; (wrapped, master_key_id)."""
        keyring = self._current()
        return self._wrap(key, keyring.keys[keyring.primary], context), f"{LOCAL_PREFIX}{keyring.primary}"

    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes, str]:
        key = secrets.token_bytes(DATA_KEY_SIZE)
        wrapped, master_key_id = self.wrap_under_primary(key, context)
        return key, wrapped, master_key_id

    def unwrap(self, wrapped: bytes, master_key_id: str, context: dict[str, str]) -> bytes:
        master = self._master_key(master_key_id)
        aad = canonical_context(context)
        if len(wrapped) != WRAP_NONCE_SIZE + DATA_KEY_SIZE + 16:
            raise KeyUnavailable("malformed wrapped key")
        try:
            return AESGCM(master).decrypt(wrapped[:WRAP_NONCE_SIZE], wrapped[WRAP_NONCE_SIZE:], aad)
        except InvalidTag:
            raise KeyUnavailable("the data key does not open: wrong master key or context") from None

    def rewrap(self, wrapped: bytes, master_key_id: str, context: dict[str, str]) -> tuple[bytes, str]:
        return self.wrap_under_primary(self.unwrap(wrapped, master_key_id, context), context)

    # -- rotation

    def rotate(self) -> str:
        """Add a new master key version and make it primary; old versions stay for reading."""
        with self._exclusive() as keyring:
            version = max([*keyring.keys, *keyring.retired]) + 1
            keyring.keys[version] = secrets.token_bytes(DATA_KEY_SIZE)
            keyring.primary = version
            self._save(keyring)
        return f"{LOCAL_PREFIX}{version}"

    def retire(self, version: int) -> None:
        """Erase a version's key material (the caller has checked nothing uses it)."""
        with self._exclusive() as keyring:
            if version == keyring.primary:
                raise KeyConfigError(f"master key version {version} is the primary: rotate first")
            if version not in keyring.keys:
                raise KeyConfigError(f"master key version {version} is not in the keyring")
            del keyring.keys[version]
            keyring.retired.append(version)
            self._save(keyring)

    def versions(self) -> dict[str, Any]:
        keyring = self._current()
        return {"primary": keyring.primary, "active": sorted(keyring.keys), "retired": sorted(keyring.retired)}


# ---------------------------------------------------------------------------- KMS


class KmsKeyProvider:
    """AWS KMS: GenerateDataKey / Decrypt / ReEncrypt with the context as encryption context.

    KMS rotates its own key material and keeps old material forever, so "rotation" here
    means re-encrypting under the configured key (for example after changing COFFRE_KMS_KEY_ID).
    """

    def __init__(self, key_id: str, endpoint_url: str | None = None, region: str | None = None, client=None) -> None:
        if not key_id:
            raise KeyConfigError("COFFRE_KEY_PROVIDER=kms needs COFFRE_KMS_KEY_ID")
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "kms",
                region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-3",
                endpoint_url=endpoint_url or None,
                # A download must fail quickly with a clear message, not hang on an unreachable KMS.
                config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}),
            )
        self.key_id = key_id
        self.client = client
        self._primary: str | None = None

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise KeyUnavailable(f"KMS refused {operation}: {code}") from None
        except BotoCoreError as error:
            raise KeyUnavailable(f"KMS unreachable for {operation}: {type(error).__name__}") from None

    @property
    def primary_id(self) -> str:
        if self._primary is None:
            metadata = self._call("describe_key", KeyId=self.key_id)["KeyMetadata"]
            self._primary = f"{KMS_PREFIX}{metadata['Arn']}"
        return self._primary

    @staticmethod
    def _kms_key(master_key_id: str) -> str:
        if not master_key_id.startswith(KMS_PREFIX):
            raise KeyUnavailable(f"data key wrapped by another provider ({master_key_id.split(':')[0]})")
        return master_key_id[len(KMS_PREFIX) :]

    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes, str]:
        canonical_context(context)
        response = self._call("generate_data_key", KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=context)
        return response["Plaintext"], response["CiphertextBlob"], f"{KMS_PREFIX}{response['KeyId']}"

    def unwrap(self, wrapped: bytes, master_key_id: str, context: dict[str, str]) -> bytes:
        canonical_context(context)
        response = self._call(
            "decrypt", CiphertextBlob=wrapped, EncryptionContext=context, KeyId=self._kms_key(master_key_id)
        )
        return response["Plaintext"]

    def rewrap(self, wrapped: bytes, master_key_id: str, context: dict[str, str]) -> tuple[bytes, str]:
        canonical_context(context)
        response = self._call(
            "re_encrypt",
            CiphertextBlob=wrapped,
            SourceEncryptionContext=context,
            SourceKeyId=self._kms_key(master_key_id),
            DestinationKeyId=self.key_id,
            DestinationEncryptionContext=context,
        )
        return response["CiphertextBlob"], f"{KMS_PREFIX}{response['KeyId']}"


# ---------------------------------------------------------------------------- selection


def build_key_provider(config: dict[str, Any]) -> LocalKeyProvider | KmsKeyProvider:
    kind = (config.get("COFFRE_KEY_PROVIDER") or "local").strip().lower()
    if kind == "local":
        return LocalKeyProvider(
            config.get("COFFRE_MASTER_KEY_FILE"),
            config.get("COFFRE_MASTER_KEY"),
            strict_permissions=config.get("COFFRE_ENV") == "production",
        )
    if kind == "kms":
        return KmsKeyProvider(
            config.get("COFFRE_KMS_KEY_ID") or "",
            endpoint_url=config.get("COFFRE_KMS_ENDPOINT_URL"),
            region=config.get("AWS_DEFAULT_REGION"),
        )
    raise KeyConfigError(f"COFFRE_KEY_PROVIDER must be 'local' or 'kms', not {kind!r}")


def get_key_provider() -> LocalKeyProvider | KmsKeyProvider:
    """The application's key provider, built once per app from its configuration."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    provider = app.extensions.get("coffre_key_provider")
    if provider is None:
        provider = build_key_provider(app.config)
        app.extensions["coffre_key_provider"] = provider
    return provider


def check_key_provider() -> None:
    """Raise KeyUnavailable / KeyConfigError when keys cannot be wrapped (the readiness probe).

    KMS is asked every time (describe_key), not through the cached primary id: a probe
    must notice a KMS that stopped answering.
    """
    provider = get_key_provider()
    if isinstance(provider, KmsKeyProvider):
        provider._call("describe_key", KeyId=provider.key_id)
    else:
        provider.primary_id  # noqa: B018 -- loads the keyring
