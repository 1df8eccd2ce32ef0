"""Loaded by child processes the test suite starts (``tests/_secrets.py`` puts this folder on
``PYTHONPATH``): every log record the child creates, and an uncaught traceback, go to
``$CLOSEGUARD_SECRETS_CHILD_DIR/secrets-child-<pid>.log``, which the session's end scans for
the known keys. A record factory, not a handler, so the child's own logging set-up
(``basicConfig``) is untouched."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any, TextIO


def _install(folder: str) -> None:
    out: list[TextIO] = []

    def write(text: str) -> None:
        try:
            if not out:
                path = os.path.join(folder, f"secrets-child-{os.getpid()}.log")
                out.append(open(path, "a", encoding="utf-8", buffering=1))  # noqa: SIM115
            out[0].write(text + "\n")
        except OSError:
            pass

    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:
            text = repr(record.msg)
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        write(f"{record.name}: {text}")
        return record

    logging.setLogRecordFactory(factory)
    hook = sys.excepthook

    def excepthook(kind: Any, value: Any, tb: Any) -> None:
        write("".join(traceback.format_exception(kind, value, tb)))
        hook(kind, value, tb)

    sys.excepthook = excepthook
    _undo.append(lambda: (logging.setLogRecordFactory(make), setattr(sys, "excepthook", hook)))


_undo: list[Any] = []


def uninstall() -> None:
    """Stop writing the child log: a pytest-xdist worker is started as a child of the
    session, but it is a session of its own that scans what it sees."""
    while _undo:
        _undo.pop()()


if os.environ.get("CLOSEGUARD_SECRETS_CHILD_DIR"):
    _install(os.environ["CLOSEGUARD_SECRETS_CHILD_DIR"])
