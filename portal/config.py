"""Configuration from environment variables, with embedded defaults under ``instance/``.

Every setting is documented in README.md. With no environment at all the portal runs
on SQLite, local storage and secrets generated under the instance folder; in production
(``COFFRE_ENV=production``) a missing or weak secret stops start-up with one line that
says what to set.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

WEAK_SECRETS = {"", "dev", "secret", "changeme", "change-me", "password", "coffre", "test"}
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    """A configuration that must not start; the message says what to set."""


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """Read a generated secret, creating it with mode 0600 on first use.

    The value is written to a temporary file and linked into place, so a crash can never
    leave an empty secret behind, and two processes starting together agree on one value.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        value = path.read_bytes().strip()
        if value:
            return value
        path.unlink()  # left empty by an older, non-atomic writer
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_urlsafe(nbytes).encode())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its value
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_bytes().strip()


def _is_weak(secret: str | bytes | None) -> bool:
    if secret is None:
        return True
    text = secret.decode() if isinstance(secret, bytes) else secret
    return text.strip().lower() in WEAK_SECRETS or len(text.strip()) < MIN_SECRET_LENGTH


def build_config(instance_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the Flask configuration mapping for this environment."""
    instance = Path(instance_path)
    production = os.environ.get("COFFRE_ENV", "development").strip().lower() == "production"
    overrides = dict(overrides or {})

    config: dict[str, Any] = {
        "COFFRE_ENV": "production" if production else "development",
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'coffre.db'}",
        "COFFRE_STORAGE_DIR": os.environ.get("COFFRE_STORAGE_DIR") or str(instance / "storage"),
        "COFFRE_MASTER_KEY_FILE": os.environ.get("COFFRE_MASTER_KEY_FILE") or str(instance / "master.key"),
        "COFFRE_MASTER_KEY": os.environ.get("COFFRE_MASTER_KEY"),
        "COFFRE_KEY_PROVIDER": os.environ.get("COFFRE_KEY_PROVIDER", "local"),
        "COFFRE_KMS_KEY_ID": os.environ.get("COFFRE_KMS_KEY_ID"),
        "COFFRE_KMS_ENDPOINT_URL": os.environ.get("COFFRE_KMS_ENDPOINT_URL"),
        "COFFRE_SHRED_LEDGER_FILE": os.environ.get("COFFRE_SHRED_LEDGER_FILE"),
        "COFFRE_JOURNAL_KEY_FILE": os.environ.get("COFFRE_JOURNAL_KEY_FILE") or str(instance / "journal_signing.key"),
        "COFFRE_JOURNAL_CHECKPOINT_FILE": os.environ.get("COFFRE_JOURNAL_CHECKPOINT_FILE")
        or str(instance / "journal_checkpoints.jsonl"),
        # Never inside the blob storage directory: a backup must survive losing the storage.
        "COFFRE_BACKUP_DIR": os.environ.get("COFFRE_BACKUP_DIR") or str(instance / "backups"),
        # An S3-compatible bucket instead of the directory (which then only stages writes).
        "COFFRE_BACKUP_S3_BUCKET": (os.environ.get("COFFRE_BACKUP_S3_BUCKET") or "").strip() or None,
        "COFFRE_BACKUP_S3_ENDPOINT_URL": (os.environ.get("COFFRE_BACKUP_S3_ENDPOINT_URL") or "").strip() or None,
        # The nightly verification re-reads 1/N of the objects: each one every N nights.
        "COFFRE_BACKUP_VERIFY_SLICES": max(1, _env_int("COFFRE_BACKUP_VERIFY_SLICES", 7)),
        # Where blobs live: "local" (COFFRE_STORAGE_DIR) or "s3" (docs/deployment.md).
        "COFFRE_STORAGE": (os.environ.get("COFFRE_STORAGE") or "local").strip().lower(),
        "COFFRE_S3_BUCKET": (os.environ.get("COFFRE_S3_BUCKET") or "").strip() or None,
        "COFFRE_S3_ENDPOINT_URL": (os.environ.get("COFFRE_S3_ENDPOINT_URL") or "").strip() or None,
        "COFFRE_S3_PREFIX": (os.environ.get("COFFRE_S3_PREFIX") or "blobs/").strip(),
        # Multipart part size, clamped to 8..64 MiB in portal/storage/s3.py.
        "COFFRE_S3_PART_MB": _env_int("COFFRE_S3_PART_MB", 8),
        # "json" writes one JSON object per log line (production behind a log collector).
        "COFFRE_LOG_FORMAT": (os.environ.get("COFFRE_LOG_FORMAT") or "text").strip().lower(),
        "COFFRE_JOURNAL_FULL_VERIFY_MAX": _env_int("COFFRE_JOURNAL_FULL_VERIFY_MAX", 50_000),
        # Unset in development: links are built from the request's host (whatever the port).
        "COFFRE_BASE_URL": (os.environ.get("COFFRE_BASE_URL") or "").strip() or None,
        "COFFRE_TRUSTED_PROXIES": _env_int("COFFRE_TRUSTED_PROXIES", 0),
        "MAX_UPLOAD_BYTES": _env_int("COFFRE_MAX_UPLOAD_MB", 2048) * 1024 * 1024,
        # Every request body but an upload's (which lifts it, see documents/upload.py).
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "COFFRE_TRASH_RETENTION_DAYS": _env_int("COFFRE_TRASH_RETENTION_DAYS", 30),
        "BCRYPT_ROUNDS": max(12, _env_int("COFFRE_BCRYPT_ROUNDS", 12)),
        "SESSION_IDLE_MINUTES": _env_int("COFFRE_SESSION_IDLE_MINUTES", 30),
        "SESSION_ABSOLUTE_HOURS": _env_int("COFFRE_SESSION_ABSOLUTE_HOURS", 12),
        "REAUTH_MINUTES": _env_int("COFFRE_REAUTH_MINUTES", 10),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        # A shared limit store (Redis) that stops answering: limits are skipped (reads stay
        # open) except on sign-in forms, which answer 503 (portal/security/shared_limits.py).
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_KEY_PREFIX": os.environ.get("COFFRE_RATELIMIT_PREFIX", "coffre"),
        # Off only for benchmarks that time one endpoint many times from one address.
        "RATELIMIT_ENABLED": _env_bool("COFFRE_RATELIMIT", True),
        "API_RATE_LIMIT": os.environ.get("COFFRE_API_RATE_LIMIT", "600/minute"),
        "API_UPLOAD_RATE_LIMIT": os.environ.get("COFFRE_API_UPLOAD_RATE_LIMIT", "60/minute"),
        # A JSON list of OpenID providers (README "Single sign-on"); parsed by portal.sso.providers.
        "COFFRE_SSO_PROVIDERS": os.environ.get("COFFRE_SSO_PROVIDERS"),
        "SMTP_HOST": os.environ.get("SMTP_HOST"),
        "SMTP_PORT": _env_int("SMTP_PORT", 587),
        "SMTP_USER": os.environ.get("SMTP_USER"),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD"),
        "SMTP_STARTTLS": _env_bool("SMTP_STARTTLS", True),
        "SMTP_TIMEOUT": _env_int("SMTP_TIMEOUT", 15),
        "EMAIL_CODE_MINUTES": _env_int("COFFRE_EMAIL_CODE_MINUTES", 10),
        # How often a session's last-seen time is written (seconds): idle timeouts need no more.
        "SESSION_TOUCH_SECONDS": _env_int("COFFRE_SESSION_TOUCH_SECONDS", 60),
        # Encrypts TOTP secrets at rest; derived from the password pepper when unset.
        "COFFRE_TOTP_KEY": os.environ.get("COFFRE_TOTP_KEY"),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Coffre <no-reply@coffre.local>"),
        "BABEL_DEFAULT_LOCALE": "fr",
        "BABEL_DEFAULT_TIMEZONE": "UTC",
        "LANGUAGES": ("fr", "en"),
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": production,
        "SESSION_COOKIE_NAME": "__Host-coffre_session" if production else "coffre_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=_env_int("COFFRE_SESSION_ABSOLUTE_HOURS", 12)),
        "REMEMBER_COOKIE_DURATION": timedelta(days=_env_int("COFFRE_REMEMBER_DAYS", 14)),
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "SCHEDULER_ENABLED": _env_bool("COFFRE_SCHEDULER", True),
        # Raw read-and-discard routes used by bench/upload_bench.py as the throughput floor.
        "BENCH_ROUTES": _env_bool("COFFRE_BENCH_ROUTES", False),
        # Billing (portal/billing): FeexPay, trial, TVA and the invoice issuer.
        "FEEXPAY_BASE_URL": os.environ.get("FEEXPAY_BASE_URL") or "https://api-v2.feexpay.me",
        "FEEXPAY_API_KEY": os.environ.get("FEEXPAY_API_KEY", ""),
        "FEEXPAY_SHOP_ID": os.environ.get("FEEXPAY_SHOP_ID", ""),
        "FEEXPAY_TIMEOUT": _env_int("FEEXPAY_TIMEOUT", 15),
        "COFFRE_TRIAL_DAYS": _env_int("COFFRE_TRIAL_DAYS", 14),
        "COFFRE_TRIAL_STORAGE_MB": _env_int("COFFRE_TRIAL_STORAGE_MB", 1024),
        "COFFRE_TVA_PERCENT": _env_int("COFFRE_TVA_PERCENT", 18),
        "COFFRE_ISSUER_NAME": os.environ.get("COFFRE_ISSUER_NAME", "Coffre SAS"),
        "COFFRE_ISSUER_ADDRESS": os.environ.get("COFFRE_ISSUER_ADDRESS", "Cotonou, Bénin"),
        "COFFRE_ISSUER_IFU": os.environ.get("COFFRE_ISSUER_IFU", ""),
        "COFFRE_ISSUER_RCCM": os.environ.get("COFFRE_ISSUER_RCCM", ""),
    }

    secret_key = os.environ.get("SECRET_KEY")
    pepper = os.environ.get("COFFRE_PASSWORD_PEPPER")
    if production:
        if _is_weak(secret_key):
            raise ConfigError(
                "SECRET_KEY is missing or weak: set it to at least 32 random characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if _is_weak(pepper):
            raise ConfigError(
                "COFFRE_PASSWORD_PEPPER is missing or weak: set it to at least 32 random "
                "characters and never change it (it keys every password hash)"
            )
        if not config["SMTP_HOST"]:
            raise ConfigError(
                "SMTP_HOST is missing: production sends login codes and reset links by e-mail "
                "(set SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD)"
            )
        if not config["COFFRE_BASE_URL"]:
            raise ConfigError(
                "COFFRE_BASE_URL is missing: production builds the links in e-mails from it, never "
                "from a request's Host header (set it to the portal's public address, https://…)"
            )
        if config["COFFRE_KEY_PROVIDER"] == "local" and not (
            config["COFFRE_MASTER_KEY"] or os.environ.get("COFFRE_MASTER_KEY_FILE")
        ):
            raise ConfigError(
                "No master key: set COFFRE_MASTER_KEY_FILE to a 0600 key file, "
                "COFFRE_MASTER_KEY, or COFFRE_KEY_PROVIDER=kms with COFFRE_KMS_KEY_ID"
            )
    config["SECRET_KEY"] = secret_key or load_or_create_secret(instance / "secret_key").decode()
    config["PASSWORD_PEPPER"] = pepper or load_or_create_secret(instance / "password_pepper").decode()

    config.update(overrides)
    # A pre-ping finds a network connection the server dropped; a SQLite file has none to
    # drop, and the ping was a statement per checkout, inside every upload's write lock.
    pre_ping = not str(config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite")
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": pre_ping})
    return config
