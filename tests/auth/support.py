"""Shared account-test fixtures: a real SMTP server on loopback, a movable clock, helpers."""

from __future__ import annotations

import email
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message

import pyotp
import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from tests.conftest import csrf_token_from


class Clock:
    """The time the portal sees; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.value = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.original_content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def last_to(self, address: str) -> Message:
        messages = self.to(address)
        assert messages, f"no mail received by {address}"
        return messages[-1]

    @staticmethod
    def body(message: Message) -> str:
        part = message.get_body(("plain",)) if hasattr(message, "get_body") else message
        payload = (part or message).get_payload(decode=True)
        return payload.decode("utf-8")

    def link_for(self, address: str, path_part: str) -> str:
        body = self.body(self.last_to(address))
        match = re.search(r"https?://\S*" + re.escape(path_part) + r"\S*", body)
        assert match, f"no link with {path_part} in: {body}"
        return re.sub(r"^https?://[^/]+", "", match.group(0))

    def code_for(self, address: str) -> str:
        body = self.body(self.last_to(address))
        match = re.search(r"\b(\d{6})\b", body)
        assert match, body
        return match.group(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def inbox(smtp_server) -> Inbox:
    inbox, _port = smtp_server
    inbox.messages.clear()
    return inbox


@pytest.fixture
def clock() -> Clock:
    return Clock()


def account_config(smtp_port: int, clock: Clock, **overrides) -> dict:
    config = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_port,
        "SMTP_STARTTLS": False,
        "COFFRE_CLOCK": clock,
        "SESSION_TOUCH_SECONDS": 0,
    }
    config.update(overrides)
    return config


@pytest.fixture
def app(app_factory: Callable[..., Flask], smtp_server, inbox, clock) -> Iterator[Flask]:
    """The standard test app, with mail going to the loopback SMTP server and our clock."""
    _inbox, port = smtp_server
    app = app_factory(**account_config(port, clock))
    with app.app_context():
        yield app


def csrf_of(client: FlaskClient, path: str) -> str:
    return csrf_token_from(client.get(path).get_data(as_text=True))


def text(response) -> str:
    return response.get_data(as_text=True)


def login(client: FlaskClient, email_address: str, password: str, **extra):
    token = csrf_of(client, "/auth/login")
    return client.post("/auth/login", data={"csrf_token": token, "email": email_address, "password": password, **extra})


def totp_now(secret: str, clock: Clock, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock() + timedelta(seconds=30 * offset_steps))


def enable_totp(client: FlaskClient, clock: Clock) -> tuple[str, list[str]]:
    """Enable TOTP through the page; returns the secret shown and the recovery codes."""
    page = text(client.get("/auth/2fa/enable"))
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page).group(1)
    response = client.post(
        "/auth/2fa/enable",
        data={"csrf_token": csrf_token_from(page), "method": "totp", "code": totp_now(secret, clock)},
    )
    assert response.status_code == 200, text(response)
    codes = re.findall(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>", text(response))
    assert len(codes) == 10
    return secret, codes


def journal_actions(organization_id: int | None = None) -> list[str]:
    from sqlalchemy import select

    from portal.audit.models import AuditEntry

    statement = select(AuditEntry.action).order_by(AuditEntry.id)
    if organization_id is not None:
        statement = statement.where(AuditEntry.organization_id == organization_id)
    return list(db.session.execute(statement).scalars())
