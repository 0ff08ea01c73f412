"""Encryption at rest: envelope encryption with per-version data keys and a streaming
AES-256-GCM blob format. A library package: it registers no blueprint."""

from portal.crypto.errors import CryptoError, IntegrityError, KeyConfigError, KeyShredded, KeyUnavailable

__all__ = ["CryptoError", "IntegrityError", "KeyConfigError", "KeyShredded", "KeyUnavailable"]
