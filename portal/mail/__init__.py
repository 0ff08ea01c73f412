"""Outgoing e-mail: SMTP when SMTP_HOST is set, otherwise the server log and a dev outbox.

Callers send after their transaction commits, so a rolled-back action never mails.

Each outbox entry records the recipient's organisation, member id and template, so that
an organisation admin can be shown their own organisation's invitations (and their own
mail) and nothing else: another member's reset link or login code would hand the admin
that member's account.
"""

from __future__ import annotations

import fcntl
import json
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from flask import current_app, has_request_context, render_template, url_for
from flask_babel import force_locale

from portal.database import utcnow

OUTBOX_FILE = "dev_outbox.jsonl"
OUTBOX_KEEP = 200


class MailError(RuntimeError):
    """The SMTP server refused or could not be reached."""


# Messages an organisation admin may read in the outbox when addressed to another member.
ADMIN_VISIBLE_KINDS = frozenset({"invitation"})


def outbox_path() -> Path:
    return Path(current_app.instance_path) / OUTBOX_FILE


def smtp_configured() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def dev_outbox_enabled() -> bool:
    """Messages are kept for display instead of sent (development without SMTP only)."""
    return not smtp_configured() and current_app.config["COFFRE_ENV"] != "production"


def absolute_url(endpoint: str, **values: Any) -> str:
    """An absolute link for a message: COFFRE_BASE_URL, or in development the request's host.

    Production refuses to start without COFFRE_BASE_URL (config.py): a Host header chosen by
    a visitor must never end up in someone's reset link.
    """
    base = current_app.config.get("COFFRE_BASE_URL")
    if base:
        return base.rstrip("/") + url_for(endpoint, **values)
    if not has_request_context():
        raise RuntimeError("COFFRE_BASE_URL is needed to build links outside a request")
    return url_for(endpoint, _external=True, **values)


def _build(to: str, subject: str, text: str, html: str | None) -> EmailMessage:
    config = current_app.config
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="coffre.local")
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def _write_outbox(to: str, subject: str, text: str, meta: dict[str, Any]) -> None:
    path = outbox_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = json.dumps(
        {"at": utcnow().isoformat(), "to": to, "subject": subject, "text": text, **meta}, ensure_ascii=False
    )
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(entry + "\n")
        handle.flush()


def can_read(entry: dict[str, Any], viewer: Any) -> bool:
    """Platform admins read every message; an organisation admin, the invitations of their
    organisation and the messages addressed to themselves. Entries without an organisation
    (written before it was recorded) are for platform admins only."""
    if viewer.is_platform_admin:
        return True
    if entry.get("organization_id") != viewer.organization_id:
        return False
    return entry.get("user_id") == viewer.id or entry.get("kind") in ADMIN_VISIBLE_KINDS


def read_outbox(
    limit: int = 50,
    *,
    viewer: Any = None,
    user_id: int | None = None,
    kind: str | None = None,
    to: str | None = None,
) -> list[dict[str, Any]]:
    """The newest messages first; with ``viewer``, only those ``can_read`` lets them see."""
    path = outbox_path()
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        lines = handle.readlines()[-OUTBOX_KEEP:]
    entries = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if viewer is not None and not can_read(entry, viewer):
            continue
        if user_id is not None and entry.get("user_id") != user_id:
            continue
        if kind is not None and entry.get("kind") != kind:
            continue
        if to is not None and entry.get("to") != to:
            continue
        entries.append(entry)
        if len(entries) >= limit:
            break
    return entries


def send_mail(
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    *,
    organization_id: int | None = None,
    user_id: int | None = None,
    kind: str | None = None,
) -> None:
    config = current_app.config
    # A name typed with a line break (an organisation, a member) must not break the header.
    subject = " ".join(subject.split())
    host = config.get("SMTP_HOST")
    if not host:
        # WARNING, not INFO: Flask's logger shows nothing below WARNING by default, and this
        # line is how a developer without SMTP reads the message.
        current_app.logger.warning("mail not sent (no SMTP_HOST) to=%s subject=%s\n%s", to, subject, text)
        _write_outbox(to, subject, text, {"organization_id": organization_id, "user_id": user_id, "kind": kind})
        return
    message = _build(to, subject, text, html)
    try:
        with smtplib.SMTP(host, config["SMTP_PORT"], timeout=config.get("SMTP_TIMEOUT", 15)) as smtp:
            if config.get("SMTP_STARTTLS"):
                smtp.starttls()
            if config.get("SMTP_USER"):
                smtp.login(config["SMTP_USER"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        current_app.logger.error("mail to %s failed: %s", to, error)
        raise MailError(str(error)) from error


def send_template(to: str, template: str, locale: str | None, **context: Any) -> None:
    """Render ``templates/mail/<template>.txt`` in the recipient's language and send it.

    The first line of the rendered text is the subject. Every template is rendered with its
    recipient as ``user``, which names the message's organisation and member in the outbox.
    """
    with force_locale(locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        rendered = render_template(f"mail/{template}.txt", **context).strip()
    subject, _, body = rendered.partition("\n")
    recipient = context.get("user")
    send_mail(
        to,
        subject.strip(),
        body.strip() + "\n",
        organization_id=getattr(recipient, "organization_id", None),
        user_id=getattr(recipient, "id", None),
        kind=template,
    )


def send_template_safely(to: str, template: str, locale: str | None, **context: Any) -> bool:
    """Like send_template, but an SMTP failure after the commit is logged, not a 500."""
    try:
        send_template(to, template, locale, **context)
    except (MailError, ValueError):
        current_app.logger.exception("mail %s to %s not sent", template, to)
        return False
    return True
