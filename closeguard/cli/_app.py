"""Root Typer app: global options, the registration of every command group, error output."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from closeguard import __version__
from closeguard.cli import approvals as approvals_cmd
from closeguard.cli import audit as audit_cmd
from closeguard.cli import catalog as catalog_cmd
from closeguard.cli import chat as chat_cmd
from closeguard.cli import console as console_cmd
from closeguard.cli import drill as drill_cmd
from closeguard.cli import eval as eval_cmd
from closeguard.cli import info as info_cmd
from closeguard.cli import mcp as mcp_cmd
from closeguard.cli import policy as policy_cmd
from closeguard.cli import run as run_cmd
from closeguard.cli import runs as runs_cmd
from closeguard.cli import sim as sim_cmd
from closeguard.cli import store as store_cmd
from closeguard.cli import users as users_cmd
from closeguard.cli import webhooks as webhooks_cmd
from closeguard.cli import workflows as workflows_cmd
from closeguard.cli._common import error_line
from closeguard.tools.errors import CloseguardError


def _tidy(command: TyperCommand | TyperGroup, ctx: typer.Context) -> None:
    """``--help`` without type tags: no ``<bool>`` on flags, no ``<str>`` on arguments (their
    metavar says what they are), ``ID`` rather than ``{ID}`` in usage lines; recursive."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if param.param_type_name == "argument" and param.metavar is not None:
            vars(param)["display_type_rich"] = lambda ctx: None
            vars(param)["_usage_display_name"] = lambda name=param.metavar: name
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                _tidy(sub, typer.Context(sub, parent=ctx, info_name=sub.name))


def _usage_error(exc: typer.TyperException) -> int:
    """Print a usage error as one line (or the help, when no arguments were given)."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())
        return 0
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    error_line(exc.format_message() + hint)
    return exc.exit_code


class _Root(TyperGroup):
    """The root group: every error, usage or closeguard's own, is one line on stderr."""

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


app = typer.Typer(
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


app.command("info")(info_cmd.info)
app.command("catalog")(catalog_cmd.catalog)
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(approvals_cmd.app, name="approvals")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(sim_cmd.app, name="sim")
app.command("chat")(chat_cmd.chat)
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(webhooks_cmd.app, name="webhooks")
app.command("run")(run_cmd.run)
app.add_typer(workflows_cmd.app, name="workflows")
app.add_typer(runs_cmd.app, name="runs")
app.command("console")(console_cmd.console)
app.add_typer(mcp_cmd.app, name="mcp")
app.add_typer(drill_cmd.app, name="drill")
app.add_typer(store_cmd.app, name="store")
app.add_typer(users_cmd.app, name="users")


def main() -> None:
    """Console-script entry point (errors are printed by the root group, one line each)."""
    app()
