"""Outgoing e-mail: SMTP when SMTP_HOST is set, otherwise the server log and a dev outbox.

Callers send after their transaction commits, so a rolled-back action never mails.
"""

from __future__ import annotations

import fcntl
import json
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale

from portal.database import utcnow

OUTBOX_FILE = "dev_outbox.jsonl"
OUTBOX_KEEP = 200


class MailError(RuntimeError):
    """The SMTP server refused or could not be reached."""


def outbox_path() -> Path:
    return Path(current_app.instance_path) / OUTBOX_FILE


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


def _write_outbox(to: str, subject: str, text: str) -> None:
    path = outbox_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = json.dumps({"at": utcnow().isoformat(), "to": to, "subject": subject, "text": text}, ensure_ascii=False)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(entry + "\n")
        handle.flush()


def read_outbox(limit: int = 50) -> list[dict[str, Any]]:
    path = outbox_path()
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        lines = handle.readlines()[-OUTBOX_KEEP:]
    entries = []
    for line in reversed(lines):
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries[:limit]


def send_mail(to: str, subject: str, text: str, html: str | None = None) -> None:
    config = current_app.config
    # A name typed with a line break (an organisation, a member) must not break the header.
    subject = " ".join(subject.split())
    host = config.get("SMTP_HOST")
    if not host:
        current_app.logger.info("mail (no SMTP configured) to=%s subject=%s\n%s", to, subject, text)
        _write_outbox(to, subject, text)
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

    The first line of the rendered text is the subject.
    """
    with force_locale(locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        rendered = render_template(f"mail/{template}.txt", **context).strip()
    subject, _, body = rendered.partition("\n")
    send_mail(to, subject.strip(), body.strip() + "\n")


def send_template_safely(to: str, template: str, locale: str | None, **context: Any) -> bool:
    """Like send_template, but an SMTP failure after the commit is logged, not a 500."""
    try:
        send_template(to, template, locale, **context)
    except (MailError, ValueError):
        current_app.logger.exception("mail %s to %s not sent", template, to)
        return False
    return True
