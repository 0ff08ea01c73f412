"""WSGI entry point: ``flask --app wsgi run`` or ``gunicorn wsgi:app``."""

import sys

from portal import create_app
from portal.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    print(f"Coffre cannot start: {error}", file=sys.stderr)
    sys.exit(2)
