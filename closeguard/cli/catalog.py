"""``closeguard catalog``: the endpoint table, from the catalog."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from closeguard.tools.catalog import ENDPOINTS, RESOURCES

ACCESS_STYLE = {"read": "green", "write": "yellow", "destructive": "bold red"}


def catalog(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list instead of a table.")
    ] = False,
    resource: Annotated[
        str | None, typer.Option("--resource", "-r", help="Only endpoints on this resource.")
    ] = None,
) -> None:
    """List every Close endpoint closeguard knows: method, path, resource, access, event."""
    rows = [
        ep
        for ep in ENDPOINTS
        if resource is None or ep.resource == resource or ep.resource.startswith(f"{resource}.")
    ]
    if not rows:
        typer.echo(
            f"No endpoints on resource {resource!r}. Resources: {', '.join(RESOURCES)}", err=True
        )
        raise typer.Exit(1)
    if as_json:
        payload = [
            {
                "name": ep.name,
                "method": ep.method,
                "path": f"/api/v1{ep.path}",
                "resource": ep.resource,
                "access": ep.access,
                "event": ep.event,
                "events": list(ep.events),
                "summary": ep.summary,
            }
            for ep in rows
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"Close endpoints ({len(rows)}), paths under /api/v1", show_lines=False)
    for col in ("name", "method", "path", "resource", "access", "event"):
        table.add_column(col, no_wrap=col != "event", min_width=22 if col == "event" else None)
    for ep in rows:
        style = ACCESS_STYLE[ep.access]
        table.add_row(
            ep.name,
            ep.method,
            ep.path,
            ep.resource,
            f"[{style}]{ep.access}[/]",
            "\n".join(ep.events) or "-",
        )
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 150)
    console.print(table)
