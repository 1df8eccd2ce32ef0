"""``closeguard catalog``: the endpoint table, from the catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from closeguard.cli._common import JsonOpt, fail, print_json
from closeguard.tools.catalog import ENDPOINTS, RESOURCES

ACCESS_STYLE = {"read": "green", "write": "yellow", "destructive": "bold red"}


def catalog(
    as_json: JsonOpt = False,
    resource: Annotated[
        str | None,
        typer.Option(
            "--resource",
            "-r",
            metavar="RESOURCE",
            help="Only endpoints on this resource and its children (any case).",
        ),
    ] = None,
) -> None:
    """List every Close endpoint closeguard knows: method, path, resource, access, event.

    Paths are relative to the API base (/api/v1), as in the audit log and approvals.
    """
    wanted = resource.strip().lower() if resource is not None else None
    rows = [
        ep
        for ep in ENDPOINTS
        if wanted is None or ep.resource == wanted or ep.resource.startswith(f"{wanted}.")
    ]
    if not rows:
        raise fail(f"no endpoints on resource {resource!r}; resources: {', '.join(RESOURCES)}")
    if as_json:
        print_json(
            [
                {
                    "name": ep.name,
                    "method": ep.method,
                    "path": ep.path,
                    "resource": ep.resource,
                    "access": ep.access,
                    "event": ep.event,
                    "events": list(ep.events),
                    "summary": ep.summary,
                }
                for ep in rows
            ]
        )
        return
    from closeguard.cli._table import Table, styled

    table = Table(title=f"Close endpoints ({len(rows)}), paths under /api/v1")
    for col in ("name", "method", "path", "resource", "access", "event"):
        table.add_column(col, wrap=col == "event")
    for ep in rows:
        table.add_row(
            ep.name,
            ep.method,
            ep.path,
            ep.resource,
            styled(ep.access, ACCESS_STYLE[ep.access]),
            "\n".join(ep.events) or "-",
        )
    table.print()
