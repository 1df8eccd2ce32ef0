"""MCP tools from the catalog: the LangChain tools' names, schemas and descriptions.

Only the endpoints a policy can ever allow are offered (``agent.review.offered_endpoints``,
the agent's own default deny), so a client never sees a tool that could only be refused.
Arguments are checked against the same pydantic model the LangChain tool uses, then turned
into path parameters, query and body by the same ``split_arguments``. MCP's hints follow
the catalog: reads are read-only; a create of one object is additive (not destructive); an
update or anything the catalog calls destructive is destructive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import mcp_types as types
from pydantic import BaseModel, ValidationError

from closeguard.agent.review import offered_endpoints
from closeguard.guardrails import Guard
from closeguard.tools import Endpoint
from closeguard.tools.langchain import args_schema, split_arguments, tool_description, tool_name

__all__ = ["ArgumentsError", "McpTool", "Split", "offered_tools", "shown", "storable", "unfit"]

Split = tuple[dict[str, str], dict[str, Any] | None, dict[str, Any] | None]
"""Tool arguments as Close takes them: (path parameters, query, JSON body)."""


class ArgumentsError(ValueError):
    """Tool arguments that do not fit the tool's schema; the message says which and why."""


MAX_DEPTH = 32
"""Arguments nested deeper than this are refused: no Close body is, and deeper values
would overflow the recursive walks that validate, redact and audit them."""
MAX_URL = 8000
"""Characters of ids and query a tool call may put in its URL (servers refuse longer
request lines, and httpx cannot build one past 65,536)."""
SHOWN_MAX = 80
"""Characters of a client's name or key quoted back in a message."""


def shown(text: str, limit: int = SHOWN_MAX) -> str:
    """``text`` safe to quote back and to store: lone surrogates escaped, cut to ``limit``."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else f"{safe[:limit]}...[+{len(safe) - limit} chars]"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that JSON and the audit log can hold: text escaped as in
    ``shown`` (not cut), non-finite numbers as text, nesting cut at ``MAX_DEPTH``."""
    if isinstance(value, str):
        return value if _encodable(value) else shown(value, len(value) * 6)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        return f"...[nested deeper than {MAX_DEPTH} levels]"
    if isinstance(value, Mapping):
        return {storable(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    return value


def _where(at: tuple[Any, ...]) -> str:
    return shown(".".join(map(str, at))) or "arguments"


def unfit(value: Any) -> str | None:
    """Why ``value`` cannot be sent as JSON (a lone surrogate, a non-finite number, nesting
    deeper than ``MAX_DEPTH``), naming where; None when it can. Iterative, so any depth."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        at, item = stack.pop()
        if len(at) > MAX_DEPTH:
            return f"{_where(at)}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            if not _encodable(item):
                return f"{_where(at)}: text with a lone surrogate (not valid Unicode)"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{_where(at)}: {item} is not a number JSON can carry"
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                if isinstance(key, str) and not _encodable(key):
                    return f"{_where(at)}: a key with a lone surrogate (not valid Unicode)"
                stack.append(((*at, key), sub))
        elif isinstance(item, list | tuple):
            stack.extend(((*at, i), sub) for i, sub in enumerate(item))
    return None


@dataclass(frozen=True)
class McpTool:
    """One catalog endpoint offered as an MCP tool."""

    endpoint: Endpoint
    name: str
    schema: type[BaseModel]
    definition: types.Tool

    def split(self, arguments: Mapping[str, Any] | None) -> Split:
        """(path params, query, body) for validated ``arguments``; ``ArgumentsError`` if not.

        Also bad arguments, so refused and audited here rather than failing later in the
        client or httpx: values JSON cannot carry (``unfit``), an id that is not one
        non-empty path segment, ids and filters longer than ``MAX_URL`` in the URL.
        Messages quote at most five problems and no more than ``SHOWN_MAX`` of a name.
        """
        given_args = dict(arguments or {})
        problem = unfit(given_args)
        if problem is not None:
            raise ArgumentsError(f"invalid arguments for {self.name}: {problem}")
        try:
            model = self.schema.model_validate(given_args)
            given = {name: getattr(model, name) for name in model.model_fields_set}
            split = split_arguments(self.endpoint, given)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            problems = "; ".join(
                f"{_where(tuple(e['loc']))}: {shown(e['msg'], 300)}" for e in errors[:5]
            ) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
            raise ArgumentsError(f"invalid arguments for {self.name}: {problems}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ArgumentsError(
                f"invalid arguments for {self.name}: {shown(str(exc), 300)}"
            ) from None
        path_params, query, _ = split
        odd = [p for p, v in path_params.items() if v.strip() in ("", ".", "..") or "/" in v]
        if odd:
            raise ArgumentsError(
                f"invalid arguments for {self.name}: {', '.join(odd)}: must be a Close id "
                "(one non-empty path segment)"
            )
        url = sum(len(quote(v, safe="")) for v in path_params.values())
        url += len(urlencode(query or {}, doseq=True))
        if url > MAX_URL:
            raise ArgumentsError(
                f"invalid arguments for {self.name}: ids and filters come to {url} characters "
                f"in the URL, more than the {MAX_URL} a request line can carry"
            )
        return split


def _tool(ep: Endpoint) -> McpTool:
    schema = args_schema(ep)
    name = tool_name(ep)
    read = ep.access == "read"
    definition = types.Tool(
        name=name,
        description=tool_description(ep),
        input_schema=schema.model_json_schema(),
        annotations=types.ToolAnnotations(
            read_only_hint=read,
            destructive_hint=None if read else ep.access == "destructive" or ep.method != "POST",
            idempotent_hint=read or ep.method in ("PUT", "DELETE"),
            open_world_hint=False,
        ),
    )
    return McpTool(ep, name, schema, definition)


def offered_tools(guard: Guard) -> dict[str, McpTool]:
    """The tools ``guard``'s policy can ever allow, by name, in catalog order."""
    return {tool.name: tool for tool in map(_tool, offered_endpoints(guard))}
