"""``closeguard users``: the people who answer approvals, their roles and personal tokens.

A token is printed once, as the last line (``token: ...``), and never again: the store keeps
only a hash. Whoever can write the store can add an account or change one, and so act as
anyone; guard the store as you guard the audit log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import JsonOpt, existing_store, print_json, store_writer

if TYPE_CHECKING:
    from closeguard.guardrails.accounts import Account, Accounts

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["users"].help, no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The account's name.")]


@contextlib.contextmanager
def _accounts(*, create: bool = False) -> Iterator[Accounts]:
    """The accounts of the configured store: on the standard-library writer when it is a
    SQLite file at the newest schema (no SQLAlchemy import), else on the ``Store``, made
    first when ``create`` (as the commands that change accounts always have; ``list`` only
    reads, and must not create a database)."""
    from closeguard.guardrails.accounts import Accounts

    writer = store_writer()
    if writer is not None:
        with writer:
            yield Accounts(None, rows=writer.users)
        return
    if create:
        from closeguard.store import default_store

        yield Accounts(default_store())
    else:
        yield Accounts(existing_store())


def _payload(a: Account) -> dict[str, Any]:
    """What is shown of an account: never a token or its hash."""
    return {"name": a.name, "roles": list(a.roles), "email": a.email, "disabled": a.disabled}


@app.command("add")
def add(
    name: NameArg,
    role: Annotated[
        list[str],
        typer.Option(
            "--role",
            metavar="ROLE",
            help="A role the person holds (repeat for several), e.g. sales-manager; a "
            "policy's approvers: name the roles that may answer each approval.",
        ),
    ],
    email: Annotated[
        str | None,
        typer.Option("--email", metavar="EMAIL", help="Their email: single sign-on matches it."),
    ] = None,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            metavar="URL",
            help="An Apprise URL where they are told of approvals they can answer (repeat "
            "for several).",
        ),
    ] = None,
) -> None:
    """Add a person; prints their personal token once, as the last line."""
    with _accounts(create=True) as accounts:
        account, token = accounts.add(name, roles=role, email=email, notify=notify or ())
    roles = ", ".join(account.roles)
    typer.echo(f"added {account.name} ({roles}){f' <{account.email}>' if account.email else ''}")
    typer.echo("the token is shown only now: the store keeps a hash of it")
    typer.echo(f"token: {token}")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every account: name, roles, email and whether it is disabled."""
    from closeguard.cli._table import Table, styled

    with _accounts() as accounts:
        found = accounts.list()
    if as_json:
        print_json([_payload(a) for a in found])
        return
    if not found:
        typer.echo("no accounts (closeguard users add NAME --role ROLE)")
        return
    table = Table(title=f"Accounts ({len(found)})")
    for col in ("name", "roles", "email", "status"):
        table.add_column(col)
    for a in found:
        status = styled("disabled", "red") if a.disabled else styled("enabled", "green")
        table.add_row(a.name, ", ".join(a.roles), a.email or "-", status)
    table.print()


@app.command("disable")
def disable(name: NameArg) -> None:
    """Refuse the person's token and console sessions from now on (the account stays)."""
    with _accounts(create=True) as accounts:
        accounts.disable(name)
    typer.echo(f"disabled {name}")


@app.command("rotate")
def rotate(name: NameArg) -> None:
    """A new personal token; the old one stops working at once. Printed as the last line."""
    with _accounts(create=True) as accounts:
        token = accounts.rotate(name)
    typer.echo(f"rotated the token of {name}; the old one no longer works")
    typer.echo(f"token: {token}")
