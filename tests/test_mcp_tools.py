"""The gateway's tools and its fallbacks, in process (the SDK's in-memory transport)."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp import Client

from closeguard.guardrails import Approvals, Guard, Guarded, Policy
from closeguard.mcp import Gateway, offered_tools
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.langchain import make_tools
from tests._mcp import POLICY_YAML, leads, texts


@pytest.mark.parametrize("name", ["sales-rep", "read-only", "new-lead-triage"])
def test_tools_are_the_langchain_tools_the_policy_can_allow(name: str) -> None:
    policy = Policy.load(name)
    offered = offered_tools(Guard(policy))
    langchain = {t.name: t for t in make_tools(client=None)}  # type: ignore[arg-type]
    assert offered
    for tool in offered.values():
        same = langchain[tool.name]
        assert tool.definition.description == same.description
        assert isinstance(same.args_schema, type)
        assert tool.definition.input_schema == same.args_schema.model_json_schema()
    if name == "read-only":
        assert {t.endpoint.access for t in offered.values()} == {"read"}
    if name == "sales-rep":
        assert "destructive" not in {t.endpoint.access for t in offered.values()}


def test_hints_follow_the_catalog() -> None:
    tools = offered_tools(Guard(Policy.from_yaml(POLICY_YAML)))
    hints = {n: tools[n].definition.annotations for n in ("lead_get", "lead_create", "lead_update")}
    assert hints["lead_get"] is not None and hints["lead_get"].read_only_hint
    assert hints["lead_create"] is not None and hints["lead_create"].destructive_hint is False
    assert hints["lead_update"] is not None and hints["lead_update"].destructive_hint is True
    delete = tools["lead_delete"].definition.annotations
    assert delete is not None and delete.destructive_hint and delete.idempotent_hint


def test_a_policy_that_grants_nothing_lists_nothing() -> None:
    assert offered_tools(Guard(Policy.from_yaml("name: nothing\n"))) == {}


def _gateway(store: Store, sim: Simulator) -> Gateway:
    guarded = Guarded(Policy.from_yaml(POLICY_YAML), store=store)
    return Gateway(guarded, lambda actor: sim.client(policy=guarded, actor=actor))


async def test_a_failed_elicitation_leaves_the_approval_pending(store: Store) -> None:
    """A client that says it can elicit but then errors: the call waits, nothing runs."""
    sim = Simulator(seed=2, leads=3)
    gateway = _gateway(store, sim)

    async def broken(context: object, params: object) -> types.ErrorData:
        return types.ErrorData(code=types.INTERNAL_ERROR, message="no screen")

    lead_id = leads(sim, 1)[0]
    async with Client(gateway.server(), mode="legacy", elicitation_callback=broken) as client:
        result = await client.call_tool("lead_delete", {"id": lead_id})
    await gateway.aclose()
    assert result.is_error and result.structured_content is not None
    approval = Approvals(store).get(result.structured_content["approval_id"])
    assert approval is not None and approval.status == "pending"
    assert lead_id in sim.state["leads"] and sim.request_count["lead.delete"] == 0


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_without_elicitation_the_approval_id_comes_back(store: Store, mode: str) -> None:
    sim = Simulator(seed=2, leads=3)
    gateway = _gateway(store, sim)
    lead_id = leads(sim, 1)[0]
    async with Client(gateway.server(), mode=mode) as client:
        result = await client.call_tool("lead_delete", {"id": lead_id})
    await gateway.aclose()
    assert result.is_error and "closeguard approvals approve appr_" in texts(result)
    assert lead_id in sim.state["leads"]


async def test_unknown_resource_is_a_protocol_error_not_a_crash(store: Store) -> None:
    sim = Simulator(seed=2, leads=3)
    gateway = _gateway(store, sim)
    async with Client(gateway.server(), mode="legacy") as client:
        with pytest.raises(Exception, match="no resource"):
            await client.read_resource("closeguard://nope")
        assert len((await client.list_resources()).resources) == 3
    await gateway.aclose()
