"""The MCP gateway: the catalog's tools over MCP, every call through the guarded client.

``Gateway`` holds the policy (a ``Guarded``), the approval store and one guarded
``CloseClient`` per actor, made by a factory the caller passes in: a client for Close, or
one wired to a simulator (this package never imports the simulator). The actor is the
person whose personal token authenticated the HTTP request (``auth.py``), else the
``--actor`` given, else the name the MCP client sent in its initialize request.
``Gateway.server()`` is the MCP SDK's low-level ``Server`` with list/call tools and
list/read resources.

Decisions become what an MCP user expects: a denial is an error result naming the rule and
the reason; a call that needs approval is asked of the user by elicitation (accept approves
that exact call and runs it once, decline or cancel rejects it) or, for a client without
elicitation, is an error result carrying the pending approval id and the command that
approves it. Close's own errors and bad arguments are error results too, never a crash.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from closeguard import __version__
from closeguard.guardrails import Accounts, Approvals, AuditLog, Guarded, redact
from closeguard.guardrails.audit import EMPTY_ROW
from closeguard.mcp.approval import (
    INPUT_KEY,
    QUESTION_SCHEMA,
    Answer,
    answer_of,
    approval_question,
    can_elicit,
    modern,
    question_request,
)
from closeguard.mcp.auth import Caller, caller_of
from closeguard.mcp.resources import RESOURCES, read_resource
from closeguard.mcp.tools import ArgumentsError, McpTool, Split, offered_tools, shown, storable
from closeguard.store import default_store
from closeguard.telemetry.tracing import traced
from closeguard.tools import CloseClient
from closeguard.tools.errors import (
    ApprovalError,
    ApprovalForbidden,
    ApprovalRequired,
    CloseAPIError,
    CloseConnectionError,
    PolicyViolation,
    ResponseFormatError,
    UsageError,
)
from closeguard.tools.langchain import compact

__all__ = ["DEFAULT_ACTOR", "ClientFactory", "Gateway"]

ClientFactory = Callable[[str], CloseClient]
"""Makes the guarded client that acts as the given actor."""

DEFAULT_ACTOR = "mcp-client"
"""The actor when neither ``--actor`` nor the client's initialize request names one."""

_CALL_ERRORS = (CloseAPIError, CloseConnectionError, ResponseFormatError, UsageError)

Ctx = ServerRequestContext[Any, Any]


def _text(
    text: str, *, error: bool = False, data: dict[str, Any] | None = None
) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=data,
        is_error=error,
    )


def _posing(name: str) -> str:
    return (
        f"refused: the shared token cannot act as {name!r}, who has an account: use their "
        "personal token, or another --actor or client name"
    )


@dataclass(frozen=True)
class _Call:
    """One validated tool call and the guarded client that makes it."""

    tool: McpTool
    args: dict[str, Any]
    split: Split
    client: CloseClient


class Gateway:
    """One policy's tools and resources over MCP (see the module docstring)."""

    def __init__(
        self,
        guarded: Guarded,
        client_for: ClientFactory,
        *,
        actor: str | None = None,
        description: str = "Close",
    ) -> None:
        self.guarded = guarded
        self.policy = guarded.policy
        self.store = guarded.store or default_store()
        self.approvals = Approvals(self.store)
        self.audit = AuditLog(self.store)
        self.tools: dict[str, McpTool] = offered_tools(guarded.guard)
        self.actor = actor
        self.description = description
        self._client_for = client_for
        self._clients: dict[str, CloseClient] = {}
        self._accounts = Accounts(self.store)
        self._people: dict[str, bool] = {}

    # -- clients ---------------------------------------------------------------------

    @staticmethod
    def client_name(ctx: Ctx) -> str | None:
        """The name the MCP client gave in its initialize request, if any."""
        params = ctx.session.client_params
        return (params.client_info.name or None) if params is not None else None

    @staticmethod
    def caller(ctx: Ctx) -> Caller | None:
        """Who the HTTP request's Bearer token names (None on stdio)."""
        return caller_of(ctx.request)

    def actor_of(self, ctx: Ctx) -> str:
        """The person behind the token, else ``--actor``, else the MCP client's name."""
        caller = self.caller(ctx)
        if caller is not None and caller.name is not None:
            return caller.name
        return self.actor or self.client_name(ctx) or DEFAULT_ACTOR

    async def posing_as(self, ctx: Ctx) -> str | None:
        """The person a shared-token request would be audited as, if its actor name (from
        ``--actor`` or the client) is an account's: only their own token acts as them."""
        caller = self.caller(ctx)
        if caller is None or caller.person:
            return None
        name = self.actor_of(ctx)
        known = self._people.get(name)
        if known is None:
            known = await self.store.run(self._accounts.get, name) is not None
            self._people[name] = known
        return name if known else None

    def client(self, actor: str) -> CloseClient:
        """The guarded client auditing as ``actor`` (made once per actor)."""
        found = self._clients.get(actor)
        if found is None:
            found = self._clients[actor] = self._client_for(actor)
        return found

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # -- tools -----------------------------------------------------------------------

    async def list_tools(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[t.definition for t in self.tools.values()])

    @traced("mcp.call_tool", lambda self, ctx, params: self.span_attributes(ctx, params))
    async def call_tool(
        self, ctx: Ctx, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        posing = await self.posing_as(ctx)
        if posing is not None:
            return _text(_posing(posing), error=True, data={"denied": True, "rule": "mcp.auth"})
        tool = self.tools.get(params.name)
        args = dict(params.arguments or {})
        if tool is None:
            return await self._refuse(
                ctx,
                params.name,
                args,
                "mcp.tools",
                f"unknown tool {shown(params.name)!r}: policy {self.policy.name!r} offers "
                f"{len(self.tools)} tools (tools/list shows them)",
            )
        try:
            split = tool.split(args)
        except ArgumentsError as exc:
            return await self._refuse(ctx, tool.name, args, "mcp.arguments", str(exc))
        call = _Call(tool, args, split, self.client(self.actor_of(ctx)))
        try:
            return await self._run(call)
        except ApprovalRequired as exc:
            return await self._approve_and_run(ctx, call, exc, params.input_responses)

    def span_attributes(self, ctx: Ctx, params: types.CallToolRequestParams) -> dict[str, str]:
        """The tool's name, the caller and the policy: never the arguments."""
        return {"tool": params.name, "actor": self.actor_of(ctx), "policy": self.policy.name}

    async def _run(self, call: _Call) -> types.CallToolResult:
        """One call through the guard; every outcome but a pending approval is a result."""
        path_params, query, body = call.split
        try:
            result = await call.client.call(
                call.tool.endpoint, path_params=path_params, params=query, json=body
            )
        except PolicyViolation as exc:
            return _text(f"denied: {exc}", error=True, data={"denied": True, "rule": exc.rule})
        except _CALL_ERRORS as exc:
            return _text(str(exc), error=True)
        return _text(compact(result))

    async def _approve_and_run(
        self,
        ctx: Ctx,
        call: _Call,
        exc: ApprovalRequired,
        responses: types.InputResponses | None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Ask the user (or hand back the approval id), then settle the approval."""
        if not can_elicit(ctx.session.client_capabilities):
            return self._pending(exc)
        message = approval_question(call.tool, call.args, call.split[0], exc)
        answer: Answer
        if modern(ctx.session.protocol_version):
            given = (responses or {}).get(INPUT_KEY)
            if given is None:
                return types.InputRequiredResult(
                    input_requests={INPUT_KEY: question_request(message)}
                )
            answer = answer_of(given)
        else:
            try:
                result = await ctx.session.elicit_form(
                    message,
                    QUESTION_SCHEMA,
                    related_request_id=ctx.request_id,
                )
            except (MCPError, RuntimeError):
                return self._pending(exc)
            answer = answer_of(result)
        return await self._settle(ctx, call, exc.approval_id, answer)

    async def _settle(
        self, ctx: Ctx, call: _Call, approval_id: str, answer: Answer
    ) -> types.CallToolResult:
        """Record the user's answer on the approval, then run the call once if accepted.

        A person (personal token) answers under their name and roles, ``via="token"``;
        otherwise the answer is the MCP client's user's (by the client's name), ``via``
        ``mcp-token`` over HTTP with the shared token, ``elicitation`` on stdio."""
        caller = self.caller(ctx)
        if caller is not None and caller.name is not None:
            by, via, roles = caller.name, caller.via, caller.roles
        else:
            by = self.client_name(ctx) or self.actor_of(ctx)
            via, roles = (caller.via if caller is not None else "elicitation"), None
        decide = self.approvals.approve if answer == "accept" else self.approvals.reject
        note = None if answer == "accept" else f"{answer} in the MCP client"
        try:
            await self.store.run(
                decide, approval_id, by=by, note=note, via=via, channel="mcp", roles=roles
            )
        except ApprovalForbidden as exc:
            return _text(
                f"not decided: {exc}. The call waits for someone who holds the role.",
                error=True,
                data={"approval_id": approval_id, "approvers": list(exc.approvers)},
            )
        except ApprovalError:  # decided elsewhere meanwhile: the guard tells which way
            pass
        if answer != "accept":
            return _text(
                f"not run: the user answered {answer} to approval {approval_id}",
                error=True,
                data={"approval_id": approval_id, "answer": answer},
            )
        try:
            return await self._run(call)
        except ApprovalRequired as again:
            return self._pending(again)

    async def _refuse(
        self, ctx: Ctx, name: str, args: dict[str, Any], rule: str, reason: str
    ) -> types.CallToolResult:
        """A call refused before it became a request: audited, then an error result.

        The row keeps what the audit log can store (``storable``): one row the log cannot
        write would stay in its batch and fail every flush after it.
        """
        row = {
            **EMPTY_ROW,
            "actor": self.actor_of(ctx),
            "call_id": uuid.uuid4().hex,
            "attempt": 1,
            "policy": self.policy.name,
            "method": "TOOL",
            "path": shown(name, 200),
            "decision": "deny",
            "rule": rule,
            "reason": reason,
            "args": redact({"tool_args": storable(args)}),
        }
        await self.store.run(self.audit.append, row, flush=True)
        return _text(reason, error=True, data={"denied": True, "rule": rule})

    def _pending(self, exc: ApprovalRequired) -> types.CallToolResult:
        approval_id = exc.approval_id
        return _text(
            f"needs approval: {exc} Then make the same call again; it runs once.",
            error=True,
            data={
                "approval_id": approval_id,
                "approve_with": f"closeguard approvals approve {approval_id} --as NAME",
            },
        )

    # -- resources -------------------------------------------------------------------

    async def list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=list(RESOURCES.values()))

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        posing = await self.posing_as(ctx)
        if posing is not None:
            raise MCPError(types.INVALID_REQUEST, _posing(posing))
        try:
            data = await read_resource(uri, self.policy, self.client(self.actor_of(ctx)))
        except KeyError:
            raise MCPError(types.INVALID_PARAMS, f"no resource {uri!r}") from None
        except (PolicyViolation, ApprovalRequired, *_CALL_ERRORS) as exc:
            raise MCPError(types.INTERNAL_ERROR, str(exc)) from None
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )

    # -- the server ------------------------------------------------------------------

    def server(self) -> Server[Any]:
        """The MCP SDK server for this gateway (serve it over stdio or streamable HTTP)."""
        return Server(
            "closeguard",
            version=__version__,
            title="closeguard: Close CRM behind a guard",
            instructions=(
                f"Tools for Close CRM ({self.description}), filtered and enforced by the "
                f"closeguard policy {self.policy.name!r}. Denied calls return an error naming "
                "the rule; calls that need a person ask for approval."
            ),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
        )
