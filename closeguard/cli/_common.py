"""What every command shares: option spellings, one-line errors, JSON, the existing store.

One flag per meaning across the CLI (``-n/--limit``, ``-o/--out``, ``--json`` printing a JSON
array for listings), errors as one red ``error:`` line on stderr, and read-only commands
that open the store only if it already exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from closeguard.store import Store
    from closeguard.store.reader import Reader
    from closeguard.store.writer import Writer

__all__ = [
    "JsonOpt",
    "LimitOpt",
    "OutOpt",
    "console",
    "error_line",
    "existing_store",
    "fail",
    "print_json",
    "shown",
    "store_reader",
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LimitOpt = Annotated[int, typer.Option("-n", "--limit", min=1, metavar="N", help="At most N rows.")]
OutOpt = Annotated[
    Path | None, typer.Option("-o", "--out", metavar="FILE", help="Write to FILE (default stdout).")
]


def error_line(message: str) -> None:
    """Print ``error: message`` on stderr, in red on a terminal, on one line."""
    flat = " ".join(message.split())
    typer.echo(typer.style("error:", fg="red", bold=True) + f" {flat}", err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print the error line and return the ``Exit`` to raise (1: failed, 2: bad usage)."""
    error_line(message)
    return typer.Exit(code)


LogFormatOpt = Annotated[
    str,
    typer.Option(
        "--log-format",
        metavar="text|json",
        help="Log lines on stderr: text (default) or json (one JSON object a line, for a "
        "log collector).",
    ),
]


def start_serving(log_format: str) -> None:
    """What every serving command does first: log lines in ``log_format`` and tracing as
    the ``OTEL_*`` variables ask (a wrong setting is a one-line error here, not a gap later)."""
    from closeguard.telemetry import tracing
    from closeguard.telemetry.logs import FORMATS, LogFormat, configure_logging

    if log_format not in FORMATS:
        raise fail(f"--log-format takes text or json, not {log_format!r}", 2)
    fmt: LogFormat = "json" if log_format == "json" else "text"
    configure_logging(fmt)
    try:
        tracing.configure()
    except tracing.TracingConfigError as exc:
        raise fail(str(exc)) from None


def existing_store() -> Store:
    """The configured store, only if it exists: reading must not create a database."""
    from closeguard.store import default_store

    return default_store(create=False)


def store_reader() -> Reader | None:
    """The configured store read on the standard library (no SQLAlchemy import: a read
    command starts ~0.1 s sooner) when it is a SQLite file at the newest schema, else None:
    the command then takes ``existing_store()``, which migrates an older store or says why
    there is none."""
    from closeguard.store.reader import open_reader
    from closeguard.tools.settings import store_url

    return open_reader(store_url())


def store_writer() -> Writer | None:
    """``store_reader`` for the commands that decide (approvals, accounts): a ``Writer`` of
    the configured SQLite file at the newest schema, else None (take ``existing_store()``)."""
    from closeguard.store.writer import open_writer
    from closeguard.tools.settings import store_url

    return open_writer(store_url())


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def shown(value: Any) -> str:
    """A value for a table cell: ``-`` for nothing, JSON for structures, else ``str``."""
    if value is None or value == "":
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


def console(width: int | None = None) -> Console:
    """A Rich console for tables: the terminal's width, or ``width`` when piped."""
    from rich.console import Console

    out = Console()
    if width is not None and not out.is_terminal:
        out.width = max(out.width, width)
    return out
