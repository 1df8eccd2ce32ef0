"""One handler per catalog endpoint, one module per resource; ``HANDLERS`` maps all 74.

Each resource module ends with its own ``HANDLERS`` table; ``merge`` joins them (the way
Starlette mounts route lists) and refuses a name claimed twice, a name the catalog does not
know, or a catalog endpoint left without a handler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from closeguard.simulator.handlers import (
    activities,
    contacts,
    custom_fields,
    event_log,
    filtering,
    leads,
    opportunities,
    organization,
    subscriptions,
    tasks,
)
from closeguard.simulator.handlers.common import KINDS, Handler, Result, activity_object_type
from closeguard.tools.catalog import ENDPOINTS

TABLES: tuple[Mapping[str, Handler], ...] = (
    leads.HANDLERS,
    contacts.HANDLERS,
    opportunities.HANDLERS,
    activities.HANDLERS,
    tasks.HANDLERS,
    custom_fields.HANDLERS,
    organization.HANDLERS,
    event_log.HANDLERS,
    subscriptions.HANDLERS,
    filtering.HANDLERS,
)


def merge(tables: Iterable[Mapping[str, Handler]], endpoints: Iterable[str]) -> dict[str, Handler]:
    """One table from many; ``RuntimeError`` unless each endpoint has exactly one handler."""
    merged: dict[str, Handler] = {}
    twice: set[str] = set()
    for table in tables:
        twice |= merged.keys() & table.keys()
        merged.update(table)
    names = set(endpoints)
    problems = []
    if twice:
        problems.append(f"more than one handler for {sorted(twice)}")
    if missing := names - merged.keys():
        problems.append(f"no handler for {sorted(missing)}")
    if unknown := merged.keys() - names:
        problems.append(f"handlers for endpoints the catalog lacks: {sorted(unknown)}")
    if problems:
        raise RuntimeError("simulator handlers: " + "; ".join(problems))
    return merged


HANDLERS: dict[str, Handler] = merge(TABLES, (ep.name for ep in ENDPOINTS))

__all__ = ["HANDLERS", "KINDS", "TABLES", "Handler", "Result", "activity_object_type", "merge"]
