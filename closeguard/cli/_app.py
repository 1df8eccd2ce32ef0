"""Root Typer app: global options, the lazy registry of command groups, error output.

``COMMANDS`` names every command and group with the module that holds it and its one-line
help; a module is imported only when its command runs (or its own ``--help`` is asked),
so ``closeguard --help`` and a light command do not pay for the agent, MCP, drills or
evals. A new command group is one line in ``COMMANDS`` (its module's ``typer.Typer`` takes
its help from there: one source); a new subcommand of a group is added in the group's
module alone. A command that is a function keeps its help in its docstring, whose first
paragraph its line here repeats (a test checks they agree). Group modules import heavy
packages inside their command functions (issue 23).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

from closeguard import __version__
from closeguard.cli._common import error_line
from closeguard.cli._params import plain
from closeguard.tools.errors import CloseguardError


class Entry(NamedTuple):
    """Where a command lives (``module:attr``, a function or a ``typer.Typer``) and the
    first paragraph of its help, shown by ``closeguard --help`` without importing it."""

    target: str
    help: str


COMMANDS: dict[str, Entry] = {
    "info": Entry(
        "closeguard.cli.info:info",
        "Show the configuration in use: store, Close base URL, credential (masked), model.",
    ),
    "catalog": Entry(
        "closeguard.cli.catalog:catalog",
        "List every Close endpoint closeguard knows: method, path, resource, access, event.",
    ),
    "chat": Entry(
        "closeguard.cli.chat:chat",
        "Chat with the agent over your Close data; risky calls wait for your yes.",
    ),
    "run": Entry(
        "closeguard.cli.run:run",
        "Run the workflows: webhooks, catch-up, schedules and workers, with a live view.",
    ),
    "console": Entry(
        "closeguard.cli.console:console",
        "Serve the web console: approvals, workflow runs and the audit log (Ctrl-C stops).",
    ),
    "policy": Entry("closeguard.cli.policy:app", "Check and explain guard policies."),
    "approvals": Entry("closeguard.cli.approvals:app", "Human approvals for guarded calls."),
    "audit": Entry("closeguard.cli.audit:app", "The hash-chained audit log of every guarded call."),
    "sim": Entry("closeguard.cli.sim:app", "Run the Close simulator or generate worlds for it."),
    "eval": Entry(
        "closeguard.cli.eval:app",
        "Eval suites: grade agents and workflows against the simulator.",
    ),
    "webhooks": Entry(
        "closeguard.cli.webhooks:app", "Keep Close's webhook subscription for the workflows."
    ),
    "workflows": Entry(
        "closeguard.cli.workflows:app", "The workflows: packaged ones and your own."
    ),
    "runs": Entry("closeguard.cli.runs:app", "Workflow runs: their status, errors and effects."),
    "mcp": Entry("closeguard.cli.mcp:app", "Serve Close's tools over MCP, behind a policy."),
    "drill": Entry(
        "closeguard.cli.drill:app",
        "Reliability and security drills (figures for docs/reliability.md).",
    ),
    "store": Entry(
        "closeguard.cli.store:app",
        "The store: back it up while in use, prune what finished long ago.",
    ),
    "users": Entry(
        "closeguard.cli.users:app",
        "People who answer approvals: accounts, roles and personal tokens.",
    ),
}
"""Every command, in the order ``--help`` lists them."""


def _tidy(command: TyperCommand | TyperGroup, ctx: typer.Context) -> None:
    """``--help`` without type tags: no ``<bool>`` on flags, no ``<str>`` on arguments (their
    metavar says what they are), ``ID`` rather than ``{ID}`` in usage lines; plain values
    converted without pydantic (``_params``); recursive."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option else [])]:
        plain(param)
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if param.param_type_name == "argument" and param.metavar is not None:
            vars(param)["display_type_rich"] = lambda ctx: None
            vars(param)["_usage_display_name"] = lambda name=param.metavar: name
    if isinstance(command, TyperGroup) and not isinstance(command, _Root):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                _tidy(sub, typer.Context(sub, parent=ctx, info_name=sub.name))


class _Stub(TyperCommand):
    """A command of ``COMMANDS`` not imported yet: its name and help, for listings."""


def load(name: str) -> TyperCommand | TyperGroup:
    """Import the command ``name`` of ``COMMANDS`` and build it as Typer would have at start."""
    module, _, attr = COMMANDS[name].target.partition(":")
    found = getattr(importlib.import_module(module), attr)
    holder = typer.Typer(rich_markup_mode=None)
    if isinstance(found, typer.Typer):
        holder.add_typer(found, name=name)
    else:
        holder.command(name)(found)
    built = typer.main.get_group(holder).commands[name]
    assert isinstance(built, TyperCommand | TyperGroup)
    return built


class _Root(TyperGroup):
    """The root group: commands load on first use; every error, usage or closeguard's own,
    is one line on stderr."""

    _listing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, entry in COMMANDS.items():
            self.commands.setdefault(name, _Stub(name=name, help=entry.help))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        command = self.commands.get(cmd_name)
        if isinstance(command, _Stub) and not self._listing:
            command = self.commands[cmd_name] = load(cmd_name)
            _tidy(command, typer.Context(command, parent=ctx, info_name=cmd_name))
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        """The root's help lists every command from ``COMMANDS`` without importing one."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        _tidy(self, typer.Context(self, info_name=prog_name or "closeguard"))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # click's usage errors
            code = _usage_error(exc)
        except typer.Abort:
            error_line("aborted")
            code = 1
        except CloseguardError as exc:
            error_line(str(exc))
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    """Print a usage error as one line (or the help, when no arguments were given: rich
    help is printed as the error is made, plain help is its message)."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        if help_text := exc.format_message():
            typer.echo(help_text)
        return 0
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    error_line(exc.format_message() + hint)
    return exc.exit_code


app = typer.Typer(
    rich_markup_mode=None,
    cls=_Root,
    name="closeguard",
    help=(
        "Put AI agents and sales-ops workflows to work on Close CRM, behind a guard.\n\n"
        "Settings come from the environment: CLOSE_API_KEY, CLOSE_BASE_URL, "
        "CLOSEGUARD_STORE_URL (audit log and approvals), CLOSEGUARD_MODEL; "
        "closeguard info shows what is in use."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"closeguard {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="The store for this command (sets CLOSEGUARD_STORE_URL): a SQLite file or "
            "postgresql://... to scale out.",
        ),
    ] = None,
) -> None:
    """closeguard: typed Close tools, a guard, workflows and a Close simulator."""
    if store:
        os.environ["CLOSEGUARD_STORE_URL"] = store


def main() -> None:
    """Console-script entry point (errors are printed by the root group, one line each)."""
    app()
