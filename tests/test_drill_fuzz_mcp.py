"""Bad input drill: fuzzed MCP tool calls through the gateway (issue 14, item 4).

Random tools from what a broad and a narrow policy offer (plus unknown names), called with
random JSON (wrong types, missing and extra keys, huge and deep values, unicode, lone
surrogates, NUL bytes, huge and non-finite numbers, number-like strings) and with
near-valid arguments (schema-shaped, with real ids, one field mutated). Every call must
come back as a tool result (success, or an error with a short human message and no
traceback); a call the gateway or guard refuses reaches no simulator and changes nothing;
no error result leaves a partial write; each call is audited once (one call id); and the
server answers a plain call afterwards.

``CLOSEGUARD_FUZZ_EXAMPLES`` sets the examples per test (100 in CI; 1000 for a long run
by hand).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from closeguard.guardrails import AuditLog, Guard, Guarded, Policy
from closeguard.mcp import ArgumentsError, Gateway, offered_tools
from closeguard.mcp.tools import storable
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools import ENDPOINTS
from closeguard.tools.langchain import tool_name
from tests._mcp import texts

EXAMPLES = int(os.environ.get("CLOSEGUARD_FUZZ_EXAMPLES") or 100)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

BROAD_POLICY = """\
name: fuzz-broad
description: Everything, except merges and webhooks; deletes need a yes; email drafts only.
grants:
  "*": destructive
deny:
  - lead.merge
  - webhook
approve:
  - lead.delete
  - opportunity.delete
constraints:
  activity.email.create:
    status: {in: [draft], required: true}
  opportunity.create:
    confidence: {min: 0, max: 100}
limits:
  per_window:
    window: 1h
    writes: 60
"""
NARROW_POLICY = "new-lead-triage"
"""Shipped: a few reads, lead updates scoped to triggered leads (none here), task creates."""

ALL_TOOLS = [tool_name(ep) for ep in ENDPOINTS]
GATED = {
    "lead_delete",
    "opportunity_delete",
    "activity_email_create",
    "opportunity_create",
    "lead_update",
    "task_create",
    "task_list",
}
"""Tools the two policies approve, constrain or limit: drawn half the time."""
TRACEBACK_MARKS = ("Traceback (most recent call last)", "Internal Server Error", 'File "/')
MESSAGE_MAX = 2000
"""An error message longer than this is not a human message (it echoes the input)."""
HUGE = 70_000

NUMBER_LIKE = ["NaN", "nan", "Infinity", "-inf", "1e999", "-0", "0x10", "1_000", "", " ", "null"]
KEYS = st.text(max_size=8) | st.just("k" * 5000)
ODD_TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "<script>alert(1)</script>",
    "../..",
    "/",
    ".",
    "t" * 5000,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, -(2**63) - 1, 10**30, -(10**30)]),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(NUMBER_LIKE + ODD_TEXT),
    st.integers(HUGE // 4, HUGE).map(lambda n: "é" * n),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)


def _nest(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


wild_values = st.one_of(json_values, st.integers(20, 200).map(_nest))


@dataclass
class _Seen(httpx.AsyncBaseTransport):
    """The simulator's transport, counting what reaches it (after the guard)."""

    inner: httpx.AsyncBaseTransport
    count: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return await self.inner.handle_async_request(request)


@dataclass
class _Rig:
    """A gateway on a simulator behind one policy, and what a test can observe of it."""

    store: Store
    policy: Policy
    sim: Simulator = field(default_factory=lambda: Simulator(seed=5, leads=4))
    calls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.seen = _Seen(self.sim.transport())
        guarded = Guarded(self.policy, store=self.store)
        self.gateway = Gateway(
            guarded,
            lambda actor: self.sim.client(policy=guarded, actor=actor, transport=self.seen),
        )
        self.audit = AuditLog(self.store)

    def ids(self) -> list[str]:
        """Ids of objects that exist now, for arguments that name one."""
        state = self.sim.state
        out: list[str] = []
        for kind in ("leads", "contacts", "opportunities", "tasks", "users"):
            out += list(state[kind])[:3]
        return out or ["lead_none"]

    def audit_since(self, seq: int) -> list[dict[str, Any]]:
        """Rows written after ``seq``."""
        n = self.audit.head()[0] - seq
        return self.audit.tail(n) if n > 0 else []

    async def check(self, client: Client, name: str, args: dict[str, Any] | None) -> None:
        """One call and every property of it."""
        before_state = self.sim.state_hash()
        before_seen = self.seen.count
        before_seq = self.audit.head()[0]
        result = await client.call_tool(name, args)
        await self.gateway.aclose()  # flushes the guard's audit batch
        self.calls += 1
        shown = f"{name}({_short(args)})"
        assert isinstance(result, types.CallToolResult), shown
        text = texts(result)
        new_rows = self.audit_since(before_seq)
        assert len({r["call_id"] for r in new_rows}) == 1, (shown, new_rows)
        data = result.structured_content or {}
        self.outcomes[_outcome(result, data, self.seen.count - before_seen)] += 1
        if not result.is_error:
            return
        assert text.strip(), f"{shown}: an error with no message"
        assert not any(mark in text for mark in TRACEBACK_MARKS), (shown, text)
        assert len(text) <= MESSAGE_MAX, (shown, text[:300])
        if data.get("denied") or data.get("approval_id"):
            assert self.seen.count == before_seen, f"{shown}: refused but reached the simulator"
        assert self.sim.state_hash() == before_state, f"{shown}: an error left a write: {text}"


def _outcome(result: types.CallToolResult, data: dict[str, Any], sent: int) -> str:
    """How a call ended, for hypothesis's statistics."""
    if not result.is_error:
        return "ran"
    if data.get("approval_id"):
        return "waits for approval"
    if data.get("denied"):
        return f"refused by {data.get('rule')}"
    return "Close refused" if sent else "refused by the client"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + f"... ({len(text)} chars)"


def _schema_value(
    schema: dict[str, Any], defs: dict[str, Any], ids: list[str]
) -> st.SearchStrategy[Any]:
    """Values that fit one JSON-schema node of a tool's arguments (the subset pydantic emits)."""
    if "$ref" in schema:
        return _schema_value(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, ids)
    if "anyOf" in schema:
        return st.one_of([_schema_value(s, defs, ids) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.sampled_from(ids) | st.text(max_size=20)
    if kind == "integer":
        return st.integers(schema.get("minimum", -5), schema.get("maximum", 300))
    if kind == "number":
        return st.floats(schema.get("minimum", -5), schema.get("maximum", 1e6))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_schema_value(schema.get("items", {}), defs, ids), max_size=2)
    if kind == "object" or "properties" in schema:
        return _object(schema, defs, ids)
    return json_values


def _object(schema: dict[str, Any], defs: dict[str, Any], ids: list[str]) -> st.SearchStrategy[Any]:
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {
        name: _schema_value(sub, defs, ids)
        if name in required
        else st.none() | _schema_value(sub, defs, ids)
        for name, sub in props.items()
    }
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if k in required or v is not None}
    )


@st.composite
def _call(draw: st.DrawFn, rig: _Rig) -> tuple[str, dict[str, Any] | None]:
    """A tool name and arguments: random JSON, or schema-shaped with one field mutated."""
    offered = list(rig.gateway.tools.values())
    pick = draw(st.integers(0, 9))
    if pick == 0 or not offered:
        name = draw(st.sampled_from(ALL_TOOLS) | st.text(max_size=30) | st.sampled_from(ODD_TEXT))
        return name, draw(st.none() | st.dictionaries(KEYS, wild_values, max_size=3))
    gated = [t for t in offered if t.name in GATED]
    prefer_gated = bool(gated) and draw(st.booleans())
    tool = draw(st.sampled_from(gated if prefer_gated else offered))
    schema = tool.definition.input_schema
    props = list(schema.get("properties", {}))
    if pick <= 3:
        keys = st.sampled_from(props) | KEYS if props else KEYS
        return tool.name, draw(st.dictionaries(keys, wild_values, max_size=5))
    args = draw(_object(schema, schema.get("$defs", {}), rig.ids()))
    mutation = draw(st.sampled_from(["none", "none", "drop", "replace", "extra"]))
    if mutation == "drop" and args:
        args.pop(draw(st.sampled_from(sorted(args))))
    elif mutation == "replace" and props:
        args[draw(st.sampled_from(props))] = draw(wild_values)
    elif mutation == "extra":
        args[draw(KEYS)] = draw(wild_values)
    return tool.name, args


def _fuzz(rig: _Rig, probe: tuple[str, dict[str, Any]]) -> None:
    @SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        calls = data.draw(st.lists(_call(rig), min_size=1, max_size=3))

        async def session() -> None:
            async with Client(rig.gateway.server(), mode="legacy") as client:
                for name, args in calls:
                    await rig.check(client, name, args)
                answer = await client.call_tool(*probe)
                assert not answer.is_error, texts(answer)
                assert (await client.list_tools()).tools
            await rig.gateway.aclose()

        anyio.run(session)

    run()
    print(f"\n{rig.policy.name}: {rig.calls} calls: {dict(rig.outcomes)}")
    assert rig.calls >= EXAMPLES
    report = rig.audit.verify()
    assert report.ok, report


def test_fuzzed_tool_calls_under_a_broad_policy(tmp_path: Path) -> None:
    rig = _Rig(Store(f"sqlite:///{tmp_path / 'store.db'}"), Policy.from_yaml(BROAD_POLICY))
    _fuzz(rig, ("lead_list", {"limit": 1}))


def test_fuzzed_tool_calls_under_a_narrow_policy(tmp_path: Path) -> None:
    rig = _Rig(Store(f"sqlite:///{tmp_path / 'store.db'}"), Policy.load(NARROW_POLICY))
    _fuzz(rig, ("user_me", {}))


def _refusal_rows(store: Store) -> list[dict[str, Any]]:
    return [r for r in AuditLog(store).rows() if r["method"] == "TOOL"]


async def test_a_lone_surrogate_is_refused_and_audited_without_blocking_the_log(
    tmp_path: Path,
) -> None:
    """Found by the fuzz: a lone surrogate (JSON ``"\\ud800"``, which the modern HTTP
    transport's ``json.loads`` accepts) in any argument crashed the call (a JSON-RPC error
    and a logged traceback, no audit row), and in a refused call its audit row could never
    be written, so it stayed in the batch and every later refusal crashed too."""
    rig = _Rig(Store(f"sqlite:///{tmp_path / 'store.db'}"), Policy.from_yaml(BROAD_POLICY))
    lead = next(iter(rig.sim.state["leads"]))
    async with Client(rig.gateway.server(), mode="legacy") as client:
        for name, args in [
            ("no_such_tool", {"x": "\ud800"}),
            ("lead_get", {"id": "\ud800"}),
            ("lead_update", {"id": lead, "name": "a\udfffb"}),
            ("lead_get", {}),
        ]:
            await rig.check(client, name, args)
    rows = _refusal_rows(rig.store)
    assert [(r["path"], r["rule"]) for r in rows] == [
        ("no_such_tool", "mcp.tools"),
        ("lead_get", "mcp.arguments"),
        ("lead_update", "mcp.arguments"),
        ("lead_get", "mcp.arguments"),
    ]
    assert "\\ud800" in rows[0]["args"]
    assert "lone surrogate" in rows[2]["reason"] and rows[2]["reason"].startswith(
        "invalid arguments for lead_update: name:"
    )
    assert rig.seen.count == 0
    assert rig.audit.verify().ok


async def test_ids_that_are_not_one_path_segment_are_refused_and_audited(tmp_path: Path) -> None:
    """Found by the fuzz: an empty id or one with a slash was an error result with no
    audit row (the client refused it after the gateway's checks)."""
    rig = _Rig(Store(f"sqlite:///{tmp_path / 'store.db'}"), Policy.from_yaml(BROAD_POLICY))
    async with Client(rig.gateway.server(), mode="legacy") as client:
        for bad in ("", "  ", "..", "lead_x/../../user/me", "/"):
            await rig.check(client, "lead_get", {"id": bad})
    rows = _refusal_rows(rig.store)
    assert len(rows) == 5 and {r["rule"] for r in rows} == {"mcp.arguments"}
    assert all("id: must be a Close id" in r["reason"] for r in rows)
    assert rig.seen.count == 0


async def test_a_query_too_long_for_a_url_is_refused_and_audited(tmp_path: Path) -> None:
    """Found by the fuzz: a 70,000-character filter crashed the call in httpx
    (``InvalidURL: URL component 'query' too long``) before the guard saw it."""
    rig = _Rig(Store(f"sqlite:///{tmp_path / 'store.db'}"), Policy.load(NARROW_POLICY))
    async with Client(rig.gateway.server(), mode="legacy") as client:
        await rig.check(client, "lead_list", {"query": "x" * 70_000})
        await rig.check(client, "lead_get", {"id": "lead_" + "x" * 9000})
    rows = _refusal_rows(rig.store)
    assert [r["rule"] for r in rows] == ["mcp.arguments", "mcp.arguments"]
    assert "characters in the URL" in rows[0]["reason"] and rig.seen.count == 0


def test_numbers_json_cannot_carry_and_deep_nesting_are_bad_arguments() -> None:
    """``json.loads`` (the modern HTTP transport) accepts ``NaN`` and ``Infinity``; sent on,
    they crashed the call in httpx's JSON encoder. Nesting deeper than any Close body is
    refused before the recursive validation, redaction and audit walks see it."""
    tools = offered_tools(Guard(Policy.from_yaml(BROAD_POLICY)))
    create = tools["lead_create"]
    for value, why in (
        (math.nan, "custom.cf_1: nan is not a number JSON can carry"),
        (-math.inf, "custom.cf_1: -inf is not a number JSON can carry"),
        (_nest(40), "nested deeper than 32 levels"),
    ):
        with pytest.raises(ArgumentsError, match=why):
            create.split({"name": "x", "custom": {"cf_1": value}})
    with pytest.raises(ArgumentsError, match="a key with a lone surrogate"):
        create.split({"name": "x", "custom": {"\ud800": 1}})
    kept = storable({"k": ["\ud800", math.inf, _nest(40)]})
    assert kept["k"][:2] == ["\\ud800", "inf"]
    assert "nested deeper than 32 levels" in json.dumps(kept).encode("utf-8").decode()


def test_a_message_quotes_a_huge_name_only_in_part() -> None:
    """Found by the long fuzz: a 5,000-character custom field name came back whole in the
    error (the model's own message quotes it), a message no person reads."""
    update = offered_tools(Guard(Policy.load(NARROW_POLICY)))["lead_update"]
    with pytest.raises(ArgumentsError) as refused:
        update.split({"id": "lead_x", "custom": {"k" * 5000: 1}})
    message = str(refused.value)
    assert "unknown field(s) custom.kkk" in message and len(message) < 700
