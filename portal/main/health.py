"""Liveness and readiness (``/healthz``, ``/readyz``) for load balancers and orchestrators.

``/healthz`` answers as long as the process serves requests. ``/readyz`` asks each
dependency a cheap question (the database a SELECT 1, the blob store whether it can be
written, the key provider whether it can wrap keys, Redis a PING when limits are stored
there) and names the ones that failed; the reasons are logged, never sent (they could
carry host names or key ids).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app

from portal.extensions import db

logger = logging.getLogger(__name__)


def _database() -> None:
    try:
        db.session.execute(db.text("SELECT 1"))
    finally:
        db.session.rollback()


def _blob_store() -> None:
    from portal.storage.blobs import get_blob_store

    get_blob_store().ping()


def _key_provider() -> None:
    from portal.crypto.keys import check_key_provider

    check_key_provider()


def redis_url() -> str | None:
    uri = current_app.config.get("RATELIMIT_STORAGE_URI") or ""
    return uri if uri.startswith(("redis://", "rediss://")) else None


def _redis() -> None:
    import redis

    client = redis.Redis.from_url(redis_url(), socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def readiness() -> dict[str, str]:
    """``{dependency: "ok" | "down"}`` for every dependency this instance uses."""
    checks: dict[str, Callable[[], None]] = {
        "database": _database,
        "blob_store": _blob_store,
        "key_provider": _key_provider,
    }
    if redis_url():
        checks["redis"] = _redis
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception:
            logger.warning("readiness: %s is down", name, exc_info=True)
            results[name] = "down"
    return results
