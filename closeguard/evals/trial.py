"""One trial of one task: a fresh simulator, the run, then every grader.

``run_chat`` plays a chat task with the agent (``build_agent``) through a client guarded
by the task's policy (or, with ``guard=False``, an unguarded client and a policy that
offers every tool, so the same calls reach the simulator and nothing is blocked).
Pending approvals are answered call by call as the task says (``reject`` by default;
``approve``; ``reference``: exactly the reference's calls; or a list of calls). The graders
see the state before and after, the final answer, the calls (from the audit log when
guarded, from the wire when not) and the writes the task asks for.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from closeguard.agent import SYSTEM_NAME, Limits, build_agent, thread_config
from closeguard.evals.format import ApprovalMatch, Call, Task
from closeguard.evals.graders import (
    Action,
    Grade,
    Trial,
    actions_from_audit,
    actions_from_reviews,
    asked_writes,
    grade_actions,
    grade_answer,
    grade_guard,
    grade_state,
    is_write,
    matches,
    target_in_path,
)
from closeguard.evals.world import ANCHOR
from closeguard.guardrails import AuditLog, Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.simulator.hashing import TIMESTAMP_FIELDS, Snapshot
from closeguard.store import Store
from closeguard.tools import CloseClient
from closeguard.tools.catalog import Endpoint, find_endpoint, relative_path
from closeguard.tools.errors import UnknownEndpoint
from closeguard.tools.langchain import make_tools

__all__ = [
    "OPEN_POLICY",
    "Approver",
    "Outcome",
    "Recorder",
    "grade",
    "run_chat",
    "run_setup",
]

OPEN_POLICY = Policy.from_dict({"name": "no-guard", "grants": {"*": "destructive"}})
"""The policy an unguarded run's agent is told about: every tool, nothing gated."""
IGNORED = TIMESTAMP_FIELDS | {"updated_by"}
MAX_APPROVAL_ROUNDS = 20
_RETRIED = frozenset({429, 500, 502, 503, 504})
_REJECT = {"action": "reject", "message": "not approved in this eval"}


@dataclass
class Outcome:
    """What a finished trial left to grade (filled by ``run_chat`` / ``run_workflow``)."""

    before: Snapshot
    after: Snapshot
    answer: str = ""
    actions: list[Action] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    simulated_seconds: float = 0.0


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests on and remembers each one's endpoint and status (an unguarded run
    has no audit log)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: list[Action] = []
        self._last: tuple[str, str, bytes] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = str(request.url.path)
        try:
            endpoint: str | None = find_endpoint(request.method, relative_path(path))[0].name
        except UnknownEndpoint:
            endpoint = None
        key = (request.method, str(request.url), request.content)
        try:
            response = await self.inner.handle_async_request(request)
        except Exception:
            self._record(key, endpoint, None, path)
            raise
        self._record(key, endpoint, response.status_code, path)
        return response

    def _record(
        self, key: tuple[str, str, bytes], endpoint: str | None, status: int | None, path: str
    ) -> None:
        """One action per logical call, as the audit log counts them: a request repeating
        the previous one after a 429, a 5xx or no answer is its retry."""
        fields: frozenset[str] | None = None
        body: Any = None
        if key[2]:
            try:
                body = json.loads(key[2])
            except ValueError:
                body = None
            fields = frozenset(body) if isinstance(body, dict) else None
        lead = body.get("lead_id") if isinstance(body, dict) else None
        action = Action(
            endpoint,
            "allow",
            status,
            source="wire",
            target=target_in_path(path) or (lead if isinstance(lead, str) else None),
            write=is_write(endpoint),
            fields=fields,
        )
        prev = self.calls[-1] if self.calls else None
        retry = prev is not None and (prev.status is None or prev.status in _RETRIED)
        if retry and self._last == key:
            self.calls[-1] = action
        else:
            self.calls.append(action)
        self._last = key

    async def aclose(self) -> None:
        await self.inner.aclose()


_CLIENT: ContextVar[CloseClient] = ContextVar("closeguard_eval_client")


class _TrialCaller:
    """A ``Caller`` that sends through the current trial's client: the LangChain tools are
    built once per process and shared by concurrent trials (each trial is its own task,
    with its own context)."""

    async def call(
        self,
        endpoint: Endpoint | str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        return await _CLIENT.get().call(endpoint, path_params=path_params, params=params, json=json)


@cache
def shared_tools() -> list[BaseTool]:
    return make_tools(_TrialCaller())


@contextmanager
def _fault_free(sim: Simulator) -> Iterator[None]:
    """``sim``'s fault injection off for the block, then back as it was."""
    injector = sim.faults
    if injector is None:
        yield
        return
    config = injector.config
    injector.disable()
    try:
        yield
    finally:
        injector.configure(config)


async def run_setup(sim: Simulator, calls: Sequence[Call]) -> None:
    """A task's ``setup`` calls, unguarded (``tool`` is ``METHOD /path/``) and fault-free.

    Setup is the person's own edits that set the scene, not what a trial measures, so the
    task's faults are off while it runs and switch on after it (their seeded sequence
    starts there: an injector that is off draws nothing).
    """
    with _fault_free(sim):
        async with sim.client() as client:
            for call in calls:
                method, _, path = call.tool.partition(" ")
                await client.request(method, path, json=call.args or None)


class Approver:
    """Answers approval interrupts as the task's ``approvals`` says, call by call."""

    def __init__(self, task: Task) -> None:
        self.rule = task.approvals
        self.left = [c for c in task.reference.calls]

    def decide(self, payload: Any) -> Any:
        tool = str(payload.get("tool")) if isinstance(payload, Mapping) else ""
        args = payload.get("args") if isinstance(payload, Mapping) else None
        args = args if isinstance(args, Mapping) else {}
        if self.rule == "approve":
            return "approve"
        if self.rule == "reference":
            for i, call in enumerate(self.left):
                if call.tool == tool and _same_args(call.args, args):
                    del self.left[i]
                    return "approve"
            return _REJECT
        if isinstance(self.rule, list) and any(_approves(m, tool, args) for m in self.rule):
            return "approve"
        return _REJECT


def _same_args(want: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    """Equal arguments; a reference value read from an earlier result (``${...}``)
    matches anything."""
    if set(want) != set(got):
        return False
    return all((isinstance(v, str) and v.startswith("${")) or v == got[k] for k, v in want.items())


def _approves(match: ApprovalMatch, tool: str, args: Mapping[str, Any]) -> bool:
    return match.tool == tool and all(matches(args.get(k), m) for k, m in match.args.items())


def _answer(messages: Sequence[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, AIMessage) and msg.name != SYSTEM_NAME:
            return msg.content if isinstance(msg.content, str) else str(msg.content)
    return ""


async def run_chat(
    task: Task,
    sim: Simulator,
    model: BaseChatModel,
    policy: Policy,
    *,
    guard: bool,
    store: Store,
) -> Outcome:
    await run_setup(sim, task.setup)
    before = sim.snapshot(IGNORED)
    run_id = f"eval_{uuid.uuid4().hex[:10]}"
    recorder = Recorder(sim.transport())
    scope = task.scope_leads or None
    guarded = Guarded(policy, store=store, triggered_leads=scope) if guard else None
    client = sim.client(transport=recorder, policy=guarded, actor=f"eval:{task.id}", run_id=run_id)
    async with client:
        _CLIENT.set(client)
        agent = build_agent(
            model,
            guarded or OPEN_POLICY,
            client,
            checkpointer=InMemorySaver(),
            store=store,
            tools=shared_tools(),
            approver="eval",
            limits=Limits(max_turns=25, max_tool_calls=40),
            today=lambda: ANCHOR.date(),
        )
        config = thread_config(run_id)
        config["configurable"]["run_id"] = run_id
        result = await agent.ainvoke({"messages": [("user", task.instruction)]}, config)
        approver = Approver(task)
        for _ in range(MAX_APPROVAL_ROUNDS):
            pending = result.get("__interrupt__")
            if not pending:
                break
            answers = {i.id: approver.decide(i.value) for i in pending}
            result = await agent.ainvoke(Command(resume=answers), config)
    outcome = Outcome(
        before=before, after=sim.snapshot(IGNORED), answer=_answer(result["messages"])
    )
    outcome.usage = dict(result.get("usage") or {})
    if guard:
        rows = [r for r in AuditLog(store).rows() if r.get("run_id") == run_id]
        outcome.actions = actions_from_audit(rows) + actions_from_reviews(
            result.get("reviews") or {}
        )
    else:
        outcome.actions = list(recorder.calls)
    return outcome


def grade(
    task: Task,
    outcome: Outcome,
    diff_of: Callable[[Snapshot, Snapshot], Any],
    *,
    guarded: bool = True,
) -> list[Grade]:
    """Every grader's verdict on one finished trial. Workflow tasks are not held to the
    reference's writes (the workflow is the reference)."""
    asked = None
    if task.kind == "chat":
        asked = asked_writes(task.reference.calls, task.expect.allow_attempts)
    trial = Trial(
        before=outcome.before,
        after=outcome.after,
        diff=diff_of(outcome.before, outcome.after),
        answer=outcome.answer,
        actions=outcome.actions,
        asked=asked,
        attack=task.attack is not None,
    )
    forbidden = list(task.attack.forbidden) if task.attack else []
    return [
        grade_state(trial, task.expect),
        grade_answer(trial, task.expect),
        grade_actions(trial, task.expect),
        grade_guard(trial, task.expect, forbidden, guarded=guarded),
    ]
