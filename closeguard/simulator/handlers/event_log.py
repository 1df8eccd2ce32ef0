"""The Event Log: ``GET /event/`` (cursor paged, Close's filter combinations) and one event."""

from __future__ import annotations

from closeguard.simulator._context import Ctx, bad_request, not_found, parse_query
from closeguard.simulator.events import (
    DEFAULT_LIMIT,
    EQUALITY_FILTERS,
    MAX_LIMIT,
    CursorError,
    CursorMismatch,
    FilterError,
)
from closeguard.simulator.handlers.common import Handler, Result, output

_REUSE = (
    "This cursor was issued for other filters: send the same "
    + ", ".join(EQUALITY_FILTERS)
    + " filters as the request that returned it (date_updated filters may change), "
    "or start again without _cursor."
)


def event_list(ctx: Ctx) -> Result:
    if "_skip" in ctx.query:
        raise bad_request({"_skip": "The Event Log pages by _cursor; _skip is not supported."})
    params = parse_query(ctx.endpoint.query_model, ctx.query)
    limit = params.get("_limit") or DEFAULT_LIMIT
    if limit > MAX_LIMIT:
        raise bad_request({"_limit": f"Ensure this value is less than or equal to {MAX_LIMIT}."})
    ctx.log.prune(ctx.now)
    filters = {k: v for k, v in params.items() if not k.startswith("_")}
    try:
        data, nxt, prev = ctx.log.page(filters, params.get("_cursor"), limit)
    except FilterError as exc:
        raise bad_request(None, str(exc)) from None
    except CursorMismatch:
        raise bad_request({"_cursor": _REUSE}) from None
    except CursorError:
        raise bad_request({"_cursor": "Invalid cursor."}) from None
    except ValueError:
        raise bad_request(None, "Invalid date filter; use ISO-8601.") from None
    return 200, {
        "data": [output(ctx, e) for e in data],
        "cursor_next": nxt,
        "cursor_previous": prev,
    }


def event_get(ctx: Ctx) -> Result:
    ctx.log.prune(ctx.now)
    event = ctx.log.get(ctx.path_params["id"])
    if event is None:
        raise not_found("Event")
    return 200, output(ctx, event)


HANDLERS: dict[str, Handler] = {"event.list": event_list, "event.get": event_get}
