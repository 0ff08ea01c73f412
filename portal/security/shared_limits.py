"""Rate limits shared by every instance (``RATELIMIT_STORAGE_URI=redis://…``) and what
happens when that store is down.

The documented choice (docs/deployment.md): reads stay open (Flask-Limiter swallows the
storage error and skips the limit, RATELIMIT_SWALLOW_ERRORS), but sign-in and the other
credential forms fail closed: without the shared counters an attacker could spread a
password-guessing run over the instances unthrottled, so their POSTs answer 503 until
Redis is back. The per-account login delay itself lives in the database (LoginThrottle)
and the upload quota lock is a database row lock: both already hold across instances.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request
from werkzeug.exceptions import ServiceUnavailable

logger = logging.getLogger(__name__)

# Credential-checking endpoints (POST): refused while the shared limit store is down.
GUARDED_PREFIX = "auth."
UNGUARDED = frozenset({"auth.logout"})


def _redis_down(uri: str) -> bool:
    import redis

    client = redis.Redis.from_url(uri, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        return True
    finally:
        client.close()
    return False


def _guard() -> None:
    if request.method != "POST" or not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    endpoint = request.endpoint or ""
    if not endpoint.startswith(GUARDED_PREFIX) or endpoint in UNGUARDED:
        return
    uri = current_app.config.get("RATELIMIT_STORAGE_URI") or ""
    if uri.startswith(("redis://", "rediss://")) and _redis_down(uri):
        logger.error("rate limit store unreachable: refusing %s (fail closed)", endpoint)
        raise ServiceUnavailable()


def init_app(app: Flask) -> None:
    app.before_request(_guard)
