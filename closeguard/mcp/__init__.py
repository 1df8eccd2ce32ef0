"""The MCP gateway: any MCP client works on Close through the guard.

One MCP tool per catalog endpoint the policy can ever allow (the LangChain tools' names,
schemas and descriptions), each call made through the guarded ``CloseClient``; denials are
error results naming the rule, approvals are asked by elicitation or left pending with the
command that grants them; statuses, pipelines and the policy as resources. Served over
stdio or streamable HTTP with the official MCP SDK; over HTTP every request carries a
Bearer token (a person's, or the shared ``CLOSEGUARD_MCP_TOKEN``) and calls are audited
under the person's name. Imports ``tools``, ``guardrails``,
``agent`` (the offered-tools rule) and ``store``; the CLI wires in the simulator.

::

    gateway = Gateway(Guarded(Policy.load("sales-rep"), store=store),
                      lambda actor: CloseClient(policy=guarded, actor=actor))
    await serve_stdio(gateway)                       # or, over HTTP:
    await serve_http(gateway, TokenAuth(store), sock, host="127.0.0.1")
"""

from closeguard.mcp.auth import TOKEN_ENV, Caller, TokenAuth, check_listen, is_loopback
from closeguard.mcp.gateway import DEFAULT_ACTOR, ClientFactory, Gateway
from closeguard.mcp.resources import RESOURCES, policy_summary
from closeguard.mcp.serve import HTTP_PATH, http_app, serve_http, serve_stdio
from closeguard.mcp.tools import ArgumentsError, McpTool, offered_tools

__all__ = [
    "DEFAULT_ACTOR",
    "HTTP_PATH",
    "RESOURCES",
    "TOKEN_ENV",
    "ArgumentsError",
    "Caller",
    "ClientFactory",
    "Gateway",
    "McpTool",
    "TokenAuth",
    "check_listen",
    "http_app",
    "is_loopback",
    "offered_tools",
    "policy_summary",
    "serve_http",
    "serve_stdio",
]
