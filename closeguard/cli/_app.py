"""Root Typer app: global options and the registration of every command group."""

from __future__ import annotations

from typing import Annotated

import typer

from closeguard import __version__
from closeguard.cli import approvals as approvals_cmd
from closeguard.cli import audit as audit_cmd
from closeguard.cli import catalog as catalog_cmd
from closeguard.cli import policy as policy_cmd
from closeguard.cli import sim as sim_cmd
from closeguard.tools.errors import CloseguardError

app = typer.Typer(
    name="closeguard",
    help=(
        "Put AI agents and sales-ops workflows to work on Close CRM, behind a guard.\n\n"
        "Settings come from the environment: CLOSE_API_KEY, CLOSE_BASE_URL, "
        "CLOSEGUARD_STORE_URL (audit log and approvals), CLOSEGUARD_MODEL."
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
) -> None:
    """closeguard: typed Close tools, a guard, workflows and a Close simulator."""


app.command("catalog")(catalog_cmd.catalog)
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(approvals_cmd.app, name="approvals")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(sim_cmd.app, name="sim")


def main() -> None:
    """Console-script entry point: closeguard's own errors print one line, no traceback."""
    try:
        app()
    except CloseguardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
