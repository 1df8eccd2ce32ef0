"""Generic get / list / delete handlers, built per resource from its ``Kind``."""

from __future__ import annotations

from closeguard.simulator._context import Ctx, parse_query
from closeguard.simulator.handlers.common import (
    KINDS,
    Filter,
    Handler,
    Result,
    list_response,
    lookup,
    output,
    render,
)
from closeguard.simulator.state import CHILD_COLLECTIONS, Obj


def generic_get(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        return 200, output(ctx, render(ctx, resource, lookup(ctx, kind, ctx.path_params["id"])))

    return handler


def generic_list(resource: str, filters: Filter) -> Handler:
    """A ``_skip``/``_limit`` list; a ``lead_id`` filter reads the lead index, not the pool."""
    kind = KINDS.get(resource)
    collection = kind.collection if kind else "activities"

    def handler(ctx: Ctx) -> Result:
        params = parse_query(ctx.endpoint.query_model, ctx.query)
        lead_id = params.get("lead_id")
        pool: list[Obj]
        if lead_id is not None and collection in CHILD_COLLECTIONS:
            pool = ctx.state.children(collection, str(lead_id))
        else:
            pool = list(ctx.state[collection].values())
        items = [o for o in pool if filters(ctx, params, o)]
        if collection == "activities":
            items.sort(key=lambda a: (a["date_created"], a["id"]), reverse=True)
        if kind and kind.activity_type:
            items = [a for a in items if a.get("_type") == kind.activity_type]
        return list_response(ctx, params, items, total=resource == "opportunity")

    return handler


def generic_delete(resource: str) -> Handler:
    kind = KINDS[resource]

    def handler(ctx: Ctx) -> Result:
        obj = lookup(ctx, kind, ctx.path_params["id"])
        ctx.state.remove(kind.collection, obj["id"])
        if kind.object_type:
            ctx.emit(kind.object_type, "deleted", obj)
        if resource.startswith("custom_field."):
            key = f"custom.{obj['id']}"
            for _name, other in ctx.state.iter_objects():
                other.pop(key, None)
        return 200, {}

    return handler
