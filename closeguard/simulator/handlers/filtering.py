"""``POST /data/search/``: an interpreter for a documented subset of Advanced Filtering.

Query nodes: ``and``/``or`` (``queries``), ``negate`` (``query``), ``object_type``
(``lead`` or ``contact``; default lead), ``text`` (``value``: free text as in the lead
``query``), ``id`` (``value``), and ``field_condition`` on a ``regular_field`` or
``custom_field`` with conditions ``term`` (``values``), ``text`` (``value``, substring),
``exists``, ``boolean`` (``value``) and ``number_range`` (``gt``/``gte``/``lt``/``lte``).
``sort`` takes ``[{"field": {"field_name": ...}, "direction": "asc"|"desc"}]``. Results
carry ``id`` and ``__object_type`` unless ``_fields`` names more, e.g.
``{"lead": ["id", "name"]}``. Paging is by an opaque ``cursor`` bound to the query and
sort it was issued for: reused with another query or sort, it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from closeguard.simulator._context import Ctx, bad_request
from closeguard.simulator.handlers.common import (
    DEFAULT_PAGE,
    Handler,
    Result,
    body_args,
    render_lead,
)
from closeguard.simulator.handlers.leads import lead_query
from closeguard.simulator.state import Obj

_REUSE = (
    "This cursor was issued for another query or sort: send the query and sort of the "
    "request that returned it, or start again without a cursor."
)


def data_search(ctx: Ctx) -> Result:
    fields = body_args(ctx)
    limit = fields.get("_limit") or DEFAULT_PAGE
    if ctx.endpoint.max_limit is not None and limit > ctx.endpoint.max_limit:
        raise bad_request(
            {"_limit": f"Ensure this value is less than or equal to {ctx.endpoint.max_limit}."}
        )
    query, sorts = fields["query"], fields.get("sort") or []
    binding = search_binding(query, sorts)
    offset = decode_search_cursor(fields.get("cursor"), binding)
    hits, object_type = search(ctx, query, sorts)
    chunk = hits[offset : offset + limit]
    wanted = (fields.get("_fields") or {}).get(object_type)
    data = []
    for obj in chunk:
        full = render_lead(ctx, obj) if object_type == "lead" else dict(obj)
        keys = wanted if isinstance(wanted, list) else ["id"]
        data.append({"__object_type": object_type, **{k: full.get(k) for k in keys}})
    more = offset + limit < len(hits)
    cursor = encode_search_cursor(offset + limit, binding) if more else None
    return 200, {"data": data, "cursor": cursor}


def search(ctx: Ctx, query: Any, sorts: list[Any]) -> tuple[list[Obj], str]:
    """Every match of ``query``, sorted; and the object type searched."""
    searcher = _Search(ctx)
    object_type = searcher.object_type(query) or "lead"
    pool = ctx.state["leads" if object_type == "lead" else "contacts"].values()
    hits = [obj for obj in pool if searcher.matches(query, object_type, obj)]
    for sort in reversed(sorts):
        hits = _sorted(hits, sort)
    return hits, object_type


def search_binding(query: Any, sorts: Any) -> str:
    """A short digest of the query and sort, which a search cursor carries and must match."""
    canonical = json.dumps([query, sorts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_search_cursor(offset: int, binding: str) -> str:
    raw = json.dumps({"o": offset, "q": binding}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_search_cursor(cursor: Any, binding: str) -> int:
    if not cursor:
        return 0
    try:
        padded = str(cursor) + "=" * (-len(str(cursor)) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset, bound_to = raw["o"], raw.get("q")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise bad_request({"cursor": "Invalid cursor."}) from None
    if not isinstance(offset, int) or offset < 0:
        raise bad_request({"cursor": "Invalid cursor."})
    if bound_to != binding:
        raise bad_request({"cursor": _REUSE})
    return offset


def _sorted(hits: list[Obj], sort: Any) -> list[Obj]:
    if not isinstance(sort, dict) or not isinstance(sort.get("field"), dict):
        raise bad_request({"sort": "Each sort needs a field object."})
    name = sort["field"].get("field_name") or sort["field"].get("custom_field_id")
    if sort["field"].get("custom_field_id"):
        name = f"custom.{name}"
    reverse = sort.get("direction", "asc") == "desc"
    present = [h for h in hits if h.get(name) is not None]
    missing = [h for h in hits if h.get(name) is None]
    return (
        sorted(
            present,
            key=lambda h: str(h[name]) if not isinstance(h[name], int | float) else h[name],
            reverse=reverse,
        )
        + missing
    )


class _Search:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def object_type(self, node: Any) -> str | None:
        if not isinstance(node, dict):
            return None
        if node.get("type") == "object_type":
            value = node.get("object_type")
            if value not in ("lead", "contact"):
                raise bad_request({"query": f"Unsupported object_type {value!r}."})
            return str(value)
        children = node.get("queries")
        for child in children if isinstance(children, list) else []:
            found = self.object_type(child)
            if found:
                return found
        return None

    def matches(self, node: Any, object_type: str, obj: Obj) -> bool:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise bad_request({"query": "Each query node needs a type."})
        kind = node["type"]
        if kind in ("and", "or"):
            children = node.get("queries")
            if not isinstance(children, list):
                raise bad_request({"query": f"An {kind} node needs a list of queries."})
            results = (self.matches(c, object_type, obj) for c in children)
            return all(results) if kind == "and" else any(results)
        if kind == "negate":
            return not self.matches(node.get("query"), object_type, obj)
        if kind == "object_type":
            return node.get("object_type") == object_type
        if kind == "id":
            return bool(obj["id"] == node.get("value"))
        if kind == "text":
            value = str(node.get("value", ""))
            if object_type == "lead":
                return lead_query(self.ctx.state, value)(obj)
            hay = [str(obj.get("name") or ""), *(e.get("email", "") for e in obj["emails"])]
            return any(value.lower() in str(h).lower() for h in hay)
        if kind == "field_condition":
            return self._field_condition(node, obj)
        raise bad_request({"query": f"Unsupported query type {kind!r} (see the simulator docs)."})

    def _field_condition(self, node: Obj, obj: Obj) -> bool:
        spec, cond = node.get("field"), node.get("condition")
        if not isinstance(spec, dict) or not isinstance(cond, dict):
            raise bad_request({"query": "field_condition needs field and condition objects."})
        if spec.get("type") == "custom_field":
            value = obj.get(f"custom.{spec.get('custom_field_id')}")
        else:
            value = obj.get(str(spec.get("field_name")))
        kind = cond.get("type")
        if kind == "term":
            values = cond.get("values") or []
            return value in values or (isinstance(value, list) and any(v in values for v in value))
        if kind == "text":
            return str(cond.get("value", "")).lower() in str(value or "").lower()
        if kind == "exists":
            return value not in (None, "", [])
        if kind == "boolean":
            return bool(value) == bool(cond.get("value"))
        if kind == "number_range":
            if not isinstance(value, int | float):
                return False
            tests = {
                "gt": value.__gt__,
                "gte": value.__ge__,
                "lt": value.__lt__,
                "lte": value.__le__,
            }
            return all(bool(t(cond[k])) for k, t in tests.items() if cond.get(k) is not None)
        raise bad_request({"query": f"Unsupported condition type {kind!r}."})


HANDLERS: dict[str, Handler] = {"data.search": data_search}
