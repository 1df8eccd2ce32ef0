"""LangChain tools generated from the catalog: one tool per Close endpoint.

Each tool has a pydantic argument schema built from the endpoint's path parameters, query
model and body model, a description that states its access level, and returns compact
JSON (long lists trimmed, with a note saying how to get the rest). Calls go through
``client.call`` (the ``calls.Caller`` protocol the typed accessors use too), so a guarded
client enforces its policy on every tool call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from closeguard.tools.calls import Caller
from closeguard.tools.catalog import ENDPOINTS, SENDING_EMAIL_STATUSES, Endpoint
from closeguard.tools.errors import (
    CloseAPIError,
    CloseConnectionError,
    ResponseFormatError,
    UsageError,
)
from closeguard.tools.models import CustomizableArguments

DEFAULT_MAX_ITEMS = 20
DEFAULT_MAX_CHARS = 12_000

ACCESS_NOTE = {
    "read": "READ: only reads data.",
    "write": "WRITE: changes CRM data.",
    "destructive": "DESTRUCTIVE: cannot be undone or affects many records or real people.",
}


def tool_name(ep: Endpoint) -> str:
    """A valid tool name: ``activity.note.create`` -> ``activity_note_create``."""
    return ep.name.replace(".", "_")


def tool_description(ep: Endpoint) -> str:
    parts = [f"[{ep.access}] {ep.summary}", ACCESS_NOTE[ep.access]]
    if ep.name.startswith("activity.email.") and ep.body_model is not None:
        statuses = "/".join(sorted(SENDING_EMAIL_STATUSES))
        parts.append(f"With status {statuses} the email is SENT for real: that is destructive.")
    if ep.paging == "offset":
        parts.append(f"Pages with skip/limit (limit at most {ep.max_limit}).")
    elif ep.paging == "cursor":
        parts.append("Pages with cursor (pass cursor_next from the previous page).")
    elif ep.paging == "search":
        parts.append("Pages with cursor (pass the cursor from the previous page).")
    parts.append(f"Close API: {ep.method} /api/v1{ep.path}")
    return " ".join(parts)


def _copy_fields(model: type[BaseModel]) -> dict[str, tuple[Any, FieldInfo]]:
    """Fields of ``model`` by python name (``skip``, not ``_skip``), without their alias."""
    out: dict[str, tuple[Any, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        copied = FieldInfo.merge_field_infos(info, alias=None, validation_alias=None)
        copied.alias = None
        copied.validation_alias = None
        copied.serialization_alias = None
        out[name] = (info.annotation, copied)
    return out


def _accepts_custom(model: type[BaseModel] | None) -> bool:
    return model is not None and issubclass(model, CustomizableArguments)


def args_schema(ep: Endpoint) -> type[BaseModel]:
    """The tool's argument model: path params, then query fields, then body fields.

    An endpoint with both a query and a body (task bulk update) nests them as ``filter``
    and ``changes`` so that fields of the same name cannot collide.
    """
    fields: dict[str, Any] = {
        p: (str, Field(description=f"The {ep.resource} id ({p}).")) for p in ep.path_params
    }
    if ep.query_model is not None and ep.body_model is not None:
        fields["filter"] = (ep.query_model, Field(description="Which objects to change."))
        fields["changes"] = (ep.body_model, Field(description="The change to apply to each."))
    else:
        for source in (ep.query_model, ep.body_model):
            if source is not None:
                fields.update(_copy_fields(source))
        if _accepts_custom(ep.body_model):
            fields["custom"] = (
                dict[str, Any] | None,
                Field(default=None, description="Custom field values by id: {'cf_abc': value}."),
            )
    model: type[BaseModel] = create_model(
        f"{''.join(w.capitalize() for w in tool_name(ep).split('_'))}Args",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


def split_arguments(
    ep: Endpoint, args: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, Any] | None, dict[str, Any] | None]:
    """Turn tool arguments back into (path params, query params, JSON body), Close's names."""
    values = {k: v for k, v in args.items() if v is not None}
    path_params = {p: str(values.pop(p)) for p in ep.path_params}
    if "filter" in values or "changes" in values:
        params = _dump(ep.query_model, values.get("filter", {}))
        body = _dump(ep.body_model, values.get("changes", {}))
        return path_params, params, body
    custom = values.pop("custom", None) or {}
    query_names = set(ep.query_model.model_fields) if ep.query_model else set()
    params = _dump(ep.query_model, {k: v for k, v in values.items() if k in query_names})
    body_values = {k: v for k, v in values.items() if k not in query_names}
    body_values.update({f"custom.{k.removeprefix('custom.')}": v for k, v in custom.items()})
    body = _dump(ep.body_model, body_values)
    return path_params, params, body


def _dump(model: type[BaseModel] | None, values: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    if isinstance(values, BaseModel):
        values = values.model_dump(exclude_unset=True)
    validated = model.model_validate(values)
    return validated.model_dump(mode="json", by_alias=True, exclude_unset=True)


def compact(
    result: Any, *, max_items: int = DEFAULT_MAX_ITEMS, max_chars: int = DEFAULT_MAX_CHARS
) -> str:
    """Compact JSON for a model: lists over ``max_items`` are trimmed with a note."""
    if isinstance(result, dict) and isinstance(result.get("data"), list):
        data = result["data"]
        if len(data) > max_items:
            result = {
                **result,
                "data": data[:max_items],
                "note": f"showing {max_items} of {len(data)} items on this page; "
                "ask for a smaller limit or page on",
            }
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text) > max_chars:
        text = text[:max_chars] + f"... [truncated {len(text) - max_chars} characters]"
    return text


def make_tool(
    client: Caller,
    ep: Endpoint,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> BaseTool:
    """One LangChain tool for one endpoint, calling ``client.call``."""
    schema = args_schema(ep)

    async def run(**kwargs: Any) -> str:
        path_params, params, body = split_arguments(ep, kwargs)
        try:
            result = await client.call(ep, path_params=path_params, params=params, json=body)
        except (CloseAPIError, CloseConnectionError, ResponseFormatError, UsageError) as exc:
            raise ToolException(str(exc)) from exc
        return compact(result, max_items=max_items, max_chars=max_chars)

    tool = StructuredTool.from_function(
        coroutine=run,
        name=tool_name(ep),
        description=tool_description(ep),
        args_schema=schema,
        handle_tool_error=True,
        metadata={"endpoint": ep.name, "access": ep.access, "resource": ep.resource},
    )
    return tool


def make_tools(
    client: Caller,
    endpoints: Iterable[Endpoint] = ENDPOINTS,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[BaseTool]:
    """A tool for every endpoint given (all of the catalog by default)."""
    return [make_tool(client, ep, max_items=max_items, max_chars=max_chars) for ep in endpoints]
