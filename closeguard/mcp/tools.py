"""MCP tools from the catalog: the LangChain tools' names, schemas and descriptions.

Only the endpoints a policy can ever allow are offered (``agent.review.offered_endpoints``,
the agent's own default deny), so a client never sees a tool that could only be refused.
Arguments are checked against the same pydantic model the LangChain tool uses, then turned
into path parameters, query and body by the same ``split_arguments``. MCP's hints follow
the catalog: reads are read-only; a create of one object is additive (not destructive); an
update or anything the catalog calls destructive is destructive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from pydantic import BaseModel, ValidationError

from closeguard.agent.review import offered_endpoints
from closeguard.guardrails import Guard
from closeguard.tools import Endpoint
from closeguard.tools.langchain import args_schema, split_arguments, tool_description, tool_name

__all__ = ["ArgumentsError", "McpTool", "Split", "offered_tools"]

Split = tuple[dict[str, str], dict[str, Any] | None, dict[str, Any] | None]
"""Tool arguments as Close takes them: (path parameters, query, JSON body)."""


class ArgumentsError(ValueError):
    """Tool arguments that do not fit the tool's schema; the message says which and why."""


@dataclass(frozen=True)
class McpTool:
    """One catalog endpoint offered as an MCP tool."""

    endpoint: Endpoint
    name: str
    schema: type[BaseModel]
    definition: types.Tool

    def split(self, arguments: Mapping[str, Any] | None) -> Split:
        """(path params, query, body) for validated ``arguments``; ``ArgumentsError`` if not."""
        try:
            model = self.schema.model_validate(dict(arguments or {}))
            given = {name: getattr(model, name) for name in model.model_fields_set}
            return split_arguments(self.endpoint, given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ArgumentsError(f"invalid arguments for {self.name}: {problems}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ArgumentsError(f"invalid arguments for {self.name}: {exc}") from None


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
