"""Typed errors of the crypto layer; none of them ever carries key material."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by portal.crypto."""


class IntegrityError(CryptoError):
    """A blob that does not authenticate: tampered, truncated, extended, reordered,
    swapped with another file or version, or read under the wrong key."""


class KeyUnavailable(CryptoError):  # noqa: N818 - name fixed by the storage contract
    """A data key cannot be unwrapped: wrong or retired master key, wrong context,
    KMS unreachable or refusing."""


class KeyShredded(CryptoError):  # noqa: N818 - name fixed by the storage contract
    """The data key was destroyed on purpose (crypto-shredding): the content is gone."""


class KeyConfigError(CryptoError):
    """The key provider is misconfigured (unreadable keyring, unknown provider...)."""


class LedgerUnavailable(CryptoError):  # noqa: N818 - alongside KeyUnavailable
    """The shred ledger file cannot be written: a destruction that cannot be recorded
    outside the database must not happen (a restored backup would bring the key back)."""
