"""``--log-format json``: one JSON object per log line, through stdlib logging.

Each line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``, plus ``exc_type`` and ``exc`` (the traceback as one string) when a record
carries an exception, and any scalar ``extra=`` fields. A collector (Loki, Cloud Logging,
Datadog) parses it as is.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["FORMATS", "JsonFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str | int | float | bool):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(fmt: LogFormat, level: int = logging.INFO) -> None:
    """With ``json``: every record of ``closeguard`` at ``level`` and up, and every other
    library's warnings, go to stderr as JSON lines (the root's handlers are replaced, so
    uvicorn's and ours share the format). ``text`` leaves logging as it is: warnings as
    plain lines, beside the live view.
    """
    if fmt != "json":
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("closeguard").setLevel(level)
