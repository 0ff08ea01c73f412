"""Configuration: embedded defaults, generated secrets, production refusals, SQLite settings."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from portal.config import ConfigError, build_config

ROOT = Path(__file__).resolve().parent.parent
STRONG = "s" * 20 + "0123456789abcdefghij"


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("COFFRE_", "SECRET_KEY", "DATABASE_URL", "SMTP_")):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_embedded_defaults_live_under_instance(tmp_path, clean_env):
    config = build_config(str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'coffre.db'}"
    assert config["COFFRE_STORAGE_DIR"] == str(tmp_path / "storage")
    for name in ("secret_key", "password_pepper"):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text()) >= 32
    assert build_config(str(tmp_path))["SECRET_KEY"] == config["SECRET_KEY"]  # stable across restarts


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": "changeme"}, "SECRET_KEY"),
        ({"SECRET_KEY": STRONG}, "COFFRE_PASSWORD_PEPPER"),
        ({"SECRET_KEY": STRONG, "COFFRE_PASSWORD_PEPPER": STRONG}, "SMTP_HOST"),
        ({"SECRET_KEY": STRONG, "COFFRE_PASSWORD_PEPPER": STRONG, "SMTP_HOST": "smtp.example"}, "COFFRE_BASE_URL"),
        (
            {
                "SECRET_KEY": STRONG,
                "COFFRE_PASSWORD_PEPPER": STRONG,
                "SMTP_HOST": "smtp.example",
                "COFFRE_BASE_URL": "https://coffre.example.org",
            },
            "master key",
        ),
    ],
)
def test_production_refuses_missing_or_weak_secrets(tmp_path, clean_env, env, names):
    clean_env.setenv("COFFRE_ENV", "production")
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ConfigError, match=names):
        build_config(str(tmp_path))
    assert not (tmp_path / "secret_key").exists()


def test_production_with_secrets_hardens_cookies(tmp_path, clean_env):
    for key, value in {
        "COFFRE_ENV": "production",
        "SECRET_KEY": STRONG,
        "COFFRE_PASSWORD_PEPPER": STRONG,
        "COFFRE_MASTER_KEY_FILE": str(tmp_path / "mk"),
        "SMTP_HOST": "smtp.example",
        "COFFRE_BASE_URL": "https://coffre.example.org",
    }.items():
        clean_env.setenv(key, value)
    config = build_config(str(tmp_path))
    assert config["SESSION_COOKIE_SECURE"] and config["SESSION_COOKIE_NAME"].startswith("__Host-")


def test_wsgi_explains_a_refusal_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COFFRE_", "SECRET_KEY"))}
    env.update({"COFFRE_ENV": "production", "COFFRE_INSTANCE_DIR": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "SECRET_KEY" in result.stderr


def test_hsts_in_production(app_factory, clean_env):
    app = app_factory(COFFRE_ENV="production")
    response = app.test_client().get("/healthz", base_url="https://localhost")
    assert "max-age=" in response.headers["Strict-Transport-Security"]


def test_sqlite_is_durable_and_strict(app):
    from portal.extensions import db

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite settings")
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA secure_delete")).scalar() == 1


def test_an_empty_secret_left_by_a_crash_is_regenerated(tmp_path, clean_env):
    (tmp_path / "secret_key").write_bytes(b"")
    config = build_config(str(tmp_path))
    assert len(config["SECRET_KEY"]) >= 32
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
