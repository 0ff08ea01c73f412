"""Extension singletons, initialised by the app factory."""

from __future__ import annotations

from flask_babel import Babel
from flask_limiter import HeaderNames, Limiter
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx

from portal.database import Base, render_migration_item

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True, render_item=render_migration_item)
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
htmx = Htmx()


def _client_address() -> str:
    # request.remote_addr is already the trusted client address: ProxyFix rewrites it
    # only for the number of proxies configured, so a forged X-Forwarded-For is ignored.
    from flask import request

    return request.remote_addr or "unknown"


# The limiter would rewrite Retry-After on every response, also on a 429 that waits for
# another reason; ``portal.web.retry`` sets the real one (the sentence says the same).
limiter = Limiter(
    key_func=_client_address,
    default_limits=[],
    header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
)
