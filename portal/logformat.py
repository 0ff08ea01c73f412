"""Structured logs for production: ``COFFRE_LOG_FORMAT=json`` writes one JSON object per
line on stderr (time, level, logger, message, exception), which log collectors (journald,
Loki, CloudWatch, ELK) parse without a regex. The default stays Python's text format."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from flask import Flask


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def init_app(app: Flask) -> None:
    if app.config.get("COFFRE_LOG_FORMAT") != "json":
        return
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return  # a second app in the same process (tests, the scheduler) keeps one handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    # Flask's own handler would print the same record a second time, in text.
    app.logger.handlers = []
    app.logger.propagate = True
