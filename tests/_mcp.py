"""What the MCP gateway tests share: a policy, a scripted user, and scenarios run the same
way over stdio (a real subprocess) and streamable HTTP, each against a simulator that the
test process holds, so what reached Close can be checked on the simulator itself."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp import ClientSession
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Accounts, Approvals, AuditLog
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools import ENDPOINTS
from closeguard.tools.langchain import tool_name
from tests._secrets import api_key

FAKE_KEY = api_key("_mcp")
"""The Close key the gateway is given: it must appear in no output."""
CLIENT_NAME = "closeguard-test-client"

POLICY_YAML = """\
name: mcp-test
description: Read everything, edit leads and email drafts, delete a lead only with a yes.
extends: read-only
grants:
  lead: destructive
  activity.email: write
deny:
  - lead.merge
approve:
  - lead.delete
"""

TEST_POLICY_TOOLS = {
    *(tool_name(ep) for ep in ENDPOINTS if ep.access == "read" and ep.resource != "webhook"),
    "lead_create",
    "lead_update",
    "lead_delete",
    "activity_email_create",
    "activity_email_update",
}
"""Worked out by hand from POLICY_YAML: every read but webhooks, lead writes and deletes
(not merges), email creates and updates (a delete is destructive: beyond the grant)."""
READ_ONLY_TOOLS = {
    tool_name(ep) for ep in ENDPOINTS if ep.access == "read" and ep.resource != "webhook"
}


@dataclass
class User:
    """The person behind an MCP client: answers each elicitation from a script."""

    answers: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        action = self.answers.pop(0)
        return types.ElicitResult(action=action)  # type: ignore[arg-type]


def texts(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def leads(sim: Simulator, n: int) -> list[str]:
    return list(sim.state["leads"])[:n]


@dataclass
class Outputs:
    """Everything the gateway said, to search for the key."""

    seen: list[str] = field(default_factory=list)

    def add(self, value: Any) -> None:
        self.seen.append(value if isinstance(value, str) else json.dumps(value, default=str))

    def call(self, result: types.CallToolResult) -> types.CallToolResult:
        self.add(result.model_dump(mode="json"))
        return result

    def assert_no(self, secret: str) -> None:
        assert self.seen
        assert not [s for s in self.seen if secret in s]


async def tool_names(session: ClientSession) -> set[str]:
    return {t.name for t in (await session.list_tools()).tools}


async def check_tools_and_reads(session: ClientSession, sim: Simulator, out: Outputs) -> None:
    """The tool list is exactly the policy's; a read returns the simulator's data."""
    listed = (await session.list_tools()).tools
    out.add([t.model_dump(mode="json") for t in listed])
    assert {t.name for t in listed} == TEST_POLICY_TOOLS
    delete = next(t for t in listed if t.name == "lead_delete")
    assert delete.description is not None and delete.description.startswith("[destructive]")
    assert delete.input_schema["required"] == ["id"]
    lead_id = leads(sim, 1)[0]
    got = out.call(await session.call_tool("lead_get", {"id": lead_id}))
    assert not got.is_error
    assert json.loads(texts(got))["display_name"] == sim.state["leads"][lead_id]["display_name"]
    for uri in (
        "closeguard://close/statuses",
        "closeguard://close/pipelines",
        "closeguard://policy",
    ):
        read = await session.read_resource(uri)
        out.add(read.model_dump(mode="json"))
    statuses = json.loads(read_text(await session.read_resource("closeguard://close/statuses")))
    assert {s["label"] for s in statuses["lead"]} == {
        s["label"] for s in sim.state["lead_statuses"].values()
    }
    policy = json.loads(read_text(await session.read_resource("closeguard://policy")))
    assert policy["name"] == "mcp-test" and policy["approve"] == ["lead.delete"]


def read_text(result: types.ReadResourceResult) -> str:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    return content.text


async def check_denied_and_bad_arguments(
    session: ClientSession, sim: Simulator, out: Outputs
) -> None:
    """A denied call and calls with bad arguments are error results; Close sees none."""
    before = sim.request_count["total"]
    lead_id = leads(sim, 1)[0]
    sent = out.call(
        await session.call_tool(
            "activity_email_create",
            {"lead_id": lead_id, "status": "outbox", "subject": "hi", "body_text": "x"},
        )
    )
    assert sent.is_error and "denied" in texts(sent)
    assert sent.structured_content is not None and sent.structured_content["rule"]
    assert sent.structured_content["rule"] in texts(sent)
    merged = out.call(await session.call_tool("lead_merge", {"source": "a", "destination": "b"}))
    assert merged.is_error and "unknown tool 'lead_merge'" in texts(merged)
    missing = out.call(await session.call_tool("lead_get", {}))
    assert missing.is_error and "invalid arguments for lead_get: id: Field required" in texts(
        missing
    )
    wrong = out.call(await session.call_tool("lead_list", {"limit": "many", "colour": 1}))
    assert wrong.is_error
    assert "limit:" in texts(wrong) and "colour: Extra inputs are not permitted" in texts(wrong)
    assert sim.request_count["total"] == before
    still = out.call(await session.call_tool("lead_list", {"limit": 2}))
    assert not still.is_error and len(json.loads(texts(still))["data"]) == 2


async def check_elicited_delete(
    session: ClientSession,
    sim: Simulator,
    user: User,
    store: Store,
    out: Outputs,
    via: str = "elicitation",
) -> None:
    """Accepted: the lead is deleted once; declined: nothing is deleted; the decision rows
    say the answer came ``via`` (stdio: elicitation; HTTP: the token that authenticated)."""
    keep, gone = leads(sim, 2)
    deletes = sim.request_count["lead.delete"]
    user.answers[:] = ["decline"]
    declined = out.call(await session.call_tool("lead_delete", {"id": keep}))
    assert declined.is_error and "decline" in texts(declined)
    assert keep in sim.state["leads"] and sim.request_count["lead.delete"] == deletes
    question = user.asked[-1]
    assert "lead.delete" in question and keep in question and "destructive" in question
    assert f"DELETE /api/v1/lead/{keep}/" in question
    assert declined.structured_content is not None
    rejected = declined.structured_content["approval_id"]
    assert _approval(store, rejected)["status"] == "rejected"
    [decided] = [
        r
        for r in AuditLog(store).rows()
        if r["method"] == "DECIDE" and r["approval_id"] == rejected
    ]
    assert decided["decision"] == "rejected" and f'"via":"{via}"' in decided["args"]

    user.answers[:] = ["accept"]
    accepted = out.call(await session.call_tool("lead_delete", {"id": gone}))
    assert not accepted.is_error, texts(accepted)
    assert gone not in sim.state["leads"] and sim.request_count["lead.delete"] == deletes + 1
    user.answers[:] = ["cancel"]
    again = out.call(await session.call_tool("lead_delete", {"id": gone}))
    assert again.is_error and sim.request_count["lead.delete"] == deletes + 1


async def check_approval_by_id(
    session: ClientSession, sim: Simulator, store: Store, out: Outputs
) -> None:
    """No elicitation: the pending id comes back; after `approvals approve` it runs once."""
    lead_id = leads(sim, 1)[0]
    deletes = sim.request_count["lead.delete"]
    pending = out.call(await session.call_tool("lead_delete", {"id": lead_id}))
    assert pending.is_error and pending.structured_content is not None
    approval_id = pending.structured_content["approval_id"]
    assert f"closeguard approvals approve {approval_id}" in texts(pending)
    assert lead_id in sim.state["leads"] and sim.request_count["lead.delete"] == deletes
    other = out.call(await session.call_tool("lead_delete", {"id": leads(sim, 2)[1]}))
    assert other.structured_content is not None
    assert other.structured_content["approval_id"] != approval_id

    Accounts(store).add("tester", roles=["admin"])
    approved = CliRunner().invoke(app, ["approvals", "approve", approval_id, "--as", "tester"])
    assert approved.exit_code == 0, approved.output
    ran = out.call(await session.call_tool("lead_delete", {"id": lead_id}))
    assert not ran.is_error, texts(ran)
    assert lead_id not in sim.state["leads"] and sim.request_count["lead.delete"] == deletes + 1
    assert _approval(store, approval_id)["status"] == "consumed"
    repeat = out.call(await session.call_tool("lead_delete", {"id": lead_id}))
    assert repeat.is_error and sim.request_count["lead.delete"] == deletes + 1


def _approval(store: Store, approval_id: str) -> dict[str, Any]:
    found = Approvals(store).get(approval_id)
    assert found is not None
    return found.as_dict()


def audited_actors(store: Store) -> set[str | None]:
    """Who the calls were audited as (a person's decision rows left out)."""
    return {row["actor"] for row in AuditLog(store).rows() if row["method"] != "DECIDE"}


def deciders(store: Store) -> set[tuple[str | None, str]]:
    """Who decided approvals, and how they were authenticated."""
    rows = [r for r in AuditLog(store).rows() if r["method"] == "DECIDE"]
    return {(r["actor"], json.loads(r["args"])["via"]) for r in rows}


def endpoints_audited(store: Store, actor: str) -> Iterable[str]:
    return [row["endpoint"] for row in AuditLog(store).rows() if row["actor"] == actor]


def refusals_audited(store: Store, actor: str) -> set[tuple[str, str]]:
    """(tool, rule) of the calls refused before they became a request."""
    return {
        (row["path"], row["rule"])
        for row in AuditLog(store).rows()
        if row["actor"] == actor and row["method"] == "TOOL"
    }


REFUSED = {
    ("lead_merge", "mcp.tools"),
    ("lead_get", "mcp.arguments"),
    ("lead_list", "mcp.arguments"),
}
"""What ``check_denied_and_bad_arguments`` leaves in the audit log besides the guard's rows."""
