from tests.auth.support import app, clock, inbox, smtp_server  # noqa: F401
