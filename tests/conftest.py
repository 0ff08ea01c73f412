"""Shared fixtures: a real database (SQLite file, or PostgreSQL with
COFFRE_TEST_DATABASE=postgresql), the app, clients, and logged-in clients per role."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, has_app_context
from flask.testing import FlaskClient

from portal import create_app
from portal.extensions import db

ROOT = Path(__file__).resolve().parent.parent
TEST_PASSWORD = "correct horse battery staple"
POSTGRES_ADMIN_URL = os.environ.get("COFFRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pytest_configure(config: pytest.Config) -> None:
    # Compiled catalogues are build output (.mo is git-ignored): build them once per run.
    subprocess.run(
        [Path(sys.executable).parent / "pybabel", "-q", "compile", "-d", ROOT / "portal" / "translations"],
        check=True,
    )


def database_backend() -> str:
    return os.environ.get("COFFRE_TEST_DATABASE", "sqlite")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway database for the whole run."""
    if database_backend() == "postgresql":
        name = f"coffre_test_{os.getpid()}_{secrets.token_hex(3)}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = re.sub(r"/[^/]*$", f"/{name}", POSTGRES_ADMIN_URL)
        try:
            yield url
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'coffre-test.db'}"


class CommittingClient(FlaskClient):
    """A test client that ends the test's own transaction before each request.

    A test that reads through ``db.session`` holds a transaction; with SQLite that snapshot
    would hide the request's writes and could block it. Committing first makes every
    request see, and every later read observe, the database as a browser would.
    """

    def open(self, *args, **kwargs):
        if has_app_context():
            db.session.commit()
        # A fresh app context per request, as in production: otherwise the request would reuse
        # the test's long-lived one and ``g`` (user, CSRF token, locale) would leak between requests.
        with self.application.app_context():
            return super().open(*args, **kwargs)


def make_test_app(database_url: str, instance: Path, **overrides) -> Flask:
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "PASSWORD_PEPPER": "test-pepper-" + "y" * 32,
        "BCRYPT_ROUNDS": 4,  # tests only: production never goes below 12
        "COFFRE_STORAGE_DIR": str(instance / "storage"),
        "COFFRE_MASTER_KEY_FILE": str(instance / "master.key"),
        "RATELIMIT_ENABLED": False,
        "SCHEDULER_ENABLED": False,
        "SERVER_NAME": "localhost",
    }
    config.update(overrides)
    os.environ["COFFRE_INSTANCE_DIR"] = str(instance)
    app = create_app(config)
    app.test_client_class = CommittingClient
    return app


@pytest.fixture(scope="session")
def _schema(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    app = make_test_app(database_url, tmp_path_factory.mktemp("schema-instance"))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    yield


def _empty_tables() -> None:
    tables = [table.name for table in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        quoted = ", ".join(f'"{name}"' for name in tables)
        db.session.execute(sa.text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    else:
        for name in tables:
            db.session.execute(sa.text(f'DELETE FROM "{name}"'))
    db.session.commit()


@pytest.fixture
def app_factory(database_url: str, _schema: None, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test database with extra configuration."""
    apps: list[Flask] = []

    def factory(**overrides) -> Flask:
        app = make_test_app(database_url, tmp_path / "instance", **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            _empty_tables()
            db.engine.dispose()


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Iterator[Flask]:
    app = app_factory()
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_org(app: Flask) -> Callable[..., object]:
    from portal.organizations.models import Organization

    def factory(name: str = "Organisation de test", **fields) -> Organization:
        fields.setdefault("require_2fa", False)
        org = Organization(name=name, **fields)
        db.session.add(org)
        db.session.commit()
        return org

    return factory


@pytest.fixture
def make_user(app: Flask, make_org) -> Callable[..., object]:
    from portal.auth.models import User
    from portal.security.passwords import hash_password

    counter = iter(range(1, 1_000_000))

    def factory(
        role: str = "lecteur", org=None, email: str | None = None, password: str = TEST_PASSWORD, **fields
    ) -> User:
        org = org or make_org()
        number = next(counter)
        user = User(
            organization_id=org.id,
            email=email or f"user{number}-{secrets.token_hex(3)}@example.test",
            name=fields.pop("name", f"Utilisateur {number}"),
            role=role,
            password_hash=hash_password(password),
            **fields,
        )
        db.session.add(user)
        db.session.commit()
        return user

    return factory


@pytest.fixture
def login_as(app: Flask) -> Callable[..., FlaskClient]:
    """A test client whose session belongs to ``user`` (no form round trip)."""
    from portal.auth.sessions import open_session_for

    def factory(user) -> FlaskClient:
        client = app.test_client()
        with client.session_transaction() as session:
            open_session_for(user, session)  # a server-side session row
        db.session.commit()
        return client

    return factory


@pytest.fixture
def org(make_org):
    return make_org("Organisation A")


@pytest.fixture
def admin(make_user, org):
    return make_user("admin", org=org, name="Aminata Admin")


@pytest.fixture
def contributor(make_user, org):
    return make_user("contributeur", org=org, name="Cheikh Contributeur")


@pytest.fixture
def reader(make_user, org):
    return make_user("lecteur", org=org, name="Léa Lectrice")


@pytest.fixture
def admin_client(login_as, admin) -> FlaskClient:
    return login_as(admin)


@pytest.fixture
def contributor_client(login_as, contributor) -> FlaskClient:
    return login_as(contributor)


@pytest.fixture
def reader_client(login_as, reader) -> FlaskClient:
    return login_as(reader)


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'"X-CSRFToken": "([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def csrf(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of ``client``'s session, read from a rendered page."""
    response = client.get(path)
    return csrf_token_from(response.get_data(as_text=True))
