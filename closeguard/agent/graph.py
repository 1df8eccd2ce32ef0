"""``build_agent``: the LangGraph state machine over the guarded Close tools.

::

    START -> start -> model -> review -> (ask, one task per call needing approval) -> tools
                        ^                                                               |
                        +---------------------------------------------------------------+

- ``model``: the chat model with the tools this policy could ever allow bound to it.
- ``review``: checks every proposed call with the guard before anything runs and records a
  ``Review`` per call: run, refused (unavailable, invalid, denied, over the limit), or
  pending with the id of an approval requested in the guard's store.
- ``ask``: one task per pending call, each with exactly one open ``interrupt()``; resume
  with ``Command(resume={interrupt_id: answer})`` (``approve``, ``{"action": "edit",
  "args": ...}``, ``{"action": "reject", "message": ...}`` or ``check``, which takes the
  decision made with ``closeguard approvals approve ID``). Before asking, it reads the
  approval store, so a re-run (a resumed task starts over) or an answer given elsewhere
  never asks twice, and a bad answer is asked again with the reason.
- ``tools``: runs only the calls whose review says ``run``, once (a call that has its
  ``ToolMessage`` is skipped), through the guarded client, which enforces the policy again
  and consumes the approval bound to the exact arguments. Errors become error messages.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send, interrupt
from pydantic import ValidationError

from closeguard.agent.models import (
    SYSTEM_NAME,
    ModelError,
    malformed_tool_calls,
    provider_error,
    strict_tool_spec,
    wants_strict_tools,
)
from closeguard.agent.prompt import (
    OrgContext,
    fetch_context,
    policy_summary,
    system_prompt,
    wrap_result,
)
from closeguard.agent.review import (
    ANSWERS,
    AnswerError,
    Prepared,
    offered_endpoints,
    parse_answer,
    prepare,
    validate_args,
)
from closeguard.agent.state import AgentState, Limits, Review
from closeguard.guardrails import (
    Approvals,
    AuditLog,
    Decision,
    Guard,
    Guarded,
    Policy,
    RunContext,
    redact,
)
from closeguard.guardrails.audit import EMPTY_ROW
from closeguard.store import Store, default_store
from closeguard.telemetry.tracing import traced
from closeguard.tools import BY_NAME, CloseClient, CloseguardError, Endpoint
from closeguard.tools.langchain import make_tools

__all__ = ["AskInput", "build_agent"]

Agent = CompiledStateGraph[Any, Any, Any, Any]


class AskInput(TypedDict):
    """What the ``ask`` task for one call receives (through ``Send``)."""

    tool_call_id: str
    review: Review
    run_id: str


@dataclass
class _Deps:
    """Everything the nodes share."""

    model: Any
    guard: Guard
    store: Store
    approvals: Approvals
    audit: AuditLog
    tools: dict[str, tuple[BaseTool, Endpoint]]
    limits: Limits
    actor: str | None
    approver: str
    summary: str
    today: Callable[[], date]
    client: CloseClient
    org: OrgContext | None = None
    triggered_leads: frozenset[str] | None = None
    strict: bool = False
    """Tools are bound in OpenAI's strict form: a null argument means "not given"."""

    @property
    def policy(self) -> Policy:
        return self.guard.policy

    def context(self, run_id: str | None) -> RunContext:
        return RunContext(actor=self.actor, run_id=run_id, triggered_leads=self.triggered_leads)


def _last_ai(messages: Sequence[AnyMessage]) -> AIMessage | None:
    last = messages[-1] if messages else None
    return last if isinstance(last, AIMessage) else None


def _answered(messages: Sequence[AnyMessage]) -> set[str]:
    return {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}


def _stop(text: str) -> AIMessage:
    return AIMessage(content=text, name=SYSTEM_NAME)


def _refused(tool: str, args: dict[str, Any], rule: str, message: str) -> Review:
    return {"status": "refused", "tool": tool, "args": args, "rule": rule, "message": message}


# -- nodes -------------------------------------------------------------------------------


async def _start(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    run_id = (config.get("configurable") or {}).get("run_id") or f"run_{uuid.uuid4().hex[:12]}"
    return {"run_id": run_id, "turns": 0, "calls": 0, "stopped": None}


def _model_node(deps: _Deps) -> Callable[..., Any]:
    @traced("agent.turn", lambda state, config: _turn_attributes(deps, state))
    async def model(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        turns = state.get("turns", 0)
        if turns >= deps.limits.max_turns:
            return {
                "stopped": "turns",
                "messages": [
                    _stop(
                        f"Stopped: this run reached its limit of {deps.limits.max_turns} "
                        "model turns (Limits.max_turns). Ask again to continue."
                    )
                ],
            }
        if state.get("remaining_steps", 99) <= 3:
            return {
                "stopped": "steps",
                "messages": [_stop("Stopped: the graph's recursion limit is about to be reached.")],
            }
        if deps.org is None:
            deps.org = await fetch_context(deps.client)
        prompt = system_prompt(deps.today(), deps.org, deps.summary)
        try:
            reply = await deps.model.ainvoke([SystemMessage(prompt), *state["messages"]], config)
        except Exception as exc:
            line = provider_error(exc)
            if line is None:
                raise
            raise ModelError(line) from None
        malformed = malformed_tool_calls(reply)
        if malformed and not getattr(reply, "tool_calls", None):
            raise ModelError(malformed)
        update: dict[str, Any] = {"messages": [reply], "turns": turns + 1}
        usage = getattr(reply, "usage_metadata", None)
        if usage:
            update["usage"] = {
                k: int(usage.get(k, 0)) for k in ("input_tokens", "output_tokens", "total_tokens")
            }
        if isinstance(reply, AIMessage) and reply.tool_calls:
            update |= await _review(deps, state, reply)
        return update

    return model


def _turn_attributes(deps: _Deps, state: AgentState) -> dict[str, str | int | None]:
    return {
        "actor": deps.actor,
        "policy": deps.policy.name,
        "run_id": state.get("run_id"),
        "turn": state.get("turns", 0) + 1,
    }


async def _route_model(state: AgentState) -> list[Send] | str:
    """The end, the review (a call without one), else where the review sends the calls."""
    last = _last_ai(state["messages"])
    stopped = state.get("stopped")
    if last is None or not last.tool_calls or (stopped and stopped != "calls"):
        return END
    reviews = state.get("reviews") or {}
    if any(str(call["id"]) not in reviews for call in last.tool_calls):
        return "review"
    return await _route_review(state)


def _review_node(deps: _Deps) -> Callable[..., Any]:
    """The review on its own: for a checkpoint saved between a model turn and its review
    (written before the model node reviewed its own calls) and for updates made
    ``as_node="review"``; a model turn now reviews its calls itself."""

    async def review(state: AgentState) -> dict[str, Any]:
        last = _last_ai(state["messages"])
        if last is None:
            return {}
        return await _review(deps, state, last)

    return review


async def _review(deps: _Deps, state: AgentState, last: AIMessage) -> dict[str, Any]:
    """The reviews of ``last``'s calls not yet reviewed or answered, the calls counted, and
    ``stopped`` once the run's limit of tool calls is passed."""
    done = _answered(state["messages"]) | set(state.get("reviews") or {})
    run_id = state.get("run_id")
    used = state.get("calls", 0)
    reviews: dict[str, Review] = {}
    stopped = None
    for call in last.tool_calls:
        call_id = str(call["id"])
        if call_id in done:
            continue
        used += 1
        if used > deps.limits.max_tool_calls:
            stopped = "calls"
            reviews[call_id] = _refused(
                call["name"],
                call["args"],
                "limits.max_tool_calls",
                f"not run: this run reached its limit of {deps.limits.max_tool_calls} tool calls",
            )
            continue
        args = dict(call["args"])
        if deps.strict:
            args = {k: v for k, v in args.items() if v is not None}
        reviews[call_id] = await _check(deps, call["name"], args, run_id)
    update: dict[str, Any] = {"reviews": reviews, "calls": used}
    if stopped:
        update["stopped"] = stopped
    return update


async def _check(deps: _Deps, name: str, args: dict[str, Any], run_id: str | None) -> Review:
    """The review of one proposed call: refused, run, or pending a person's approval.

    The policy's verdict is reached in the loop (it reads nothing); the store is reached,
    on its thread, only to audit an unknown tool or to ask for an approval, so a call the
    policy simply allows costs no trip."""
    if name not in deps.tools:
        reason = f"tool {name!r} is not available under policy {deps.policy.name!r}"
        await deps.store.run(_audit_unavailable, deps, name, args, run_id, reason)
        return _refused(name, args, "agent.tools", reason)
    tool, ep = deps.tools[name]
    try:
        prepared = prepare(ep, validate_args(tool, args))
    except AnswerError as exc:
        return _refused(name, args, "schema", str(exc))
    review, decision = _verdict(deps, name, prepared, run_id)
    if decision.needs_approval and not decision.denied:
        return await deps.store.run(_ask_approval, deps, prepared, decision, review, run_id)
    return review


def _decide(deps: _Deps, name: str, prepared: Prepared, run_id: str | None) -> Review:
    """``_check``'s verdict for a prepared call, its approval asked for if it needs one
    (on the store's thread: the approval is written)."""
    review, decision = _verdict(deps, name, prepared, run_id)
    if decision.needs_approval and not decision.denied:
        return _ask_approval(deps, prepared, decision, review, run_id)
    return review


def _verdict(
    deps: _Deps, name: str, prepared: Prepared, run_id: str | None
) -> tuple[Review, Decision]:
    """What the policy says of a prepared call, as a review (refused or to run) and the
    decision behind it; reads and writes nothing."""
    decision = prepared.decide(deps.guard, deps.context(run_id))
    if decision.denied:
        refused = _refused(
            name,
            prepared.args,
            decision.rule,
            f"denied by policy {deps.policy.name!r} ({decision.rule}): {decision.reason}",
        )
        return refused, decision
    review: Review = {
        "status": "run",
        "tool": name,
        "args": prepared.args,
        "rule": decision.rule,
        "message": decision.reason,
        "approval_id": None,
    }
    return review, decision


def _ask_approval(
    deps: _Deps, prepared: Prepared, decision: Decision, review: Review, run_id: str | None
) -> Review:
    """``review`` pending the approval requested (or found) for its call."""
    approval = deps.approvals.request(
        prepared.call,
        method=prepared.endpoint.method,
        path=prepared.path,
        rule=decision.rule,
        reason=decision.reason,
        policy=deps.policy.name,
        actor=deps.actor,
        run_id=run_id,
        approvers=decision.approvers,
    )
    return {**review, "status": "pending", "approval_id": approval.id}


def _audit_unavailable(
    deps: _Deps, name: str, args: dict[str, Any], run_id: str | None, reason: str
) -> None:
    deps.audit.append(
        {
            **EMPTY_ROW,
            "actor": deps.actor,
            "run_id": run_id,
            "call_id": uuid.uuid4().hex,
            "attempt": 1,
            "policy": deps.policy.name,
            "method": "TOOL",
            "path": name,
            "decision": "deny",
            "rule": "agent.tools",
            "reason": reason,
            "args": redact({"tool_args": args}),
        },
        flush=True,
    )


async def _route_review(state: AgentState) -> list[Send] | str:
    reviews = state.get("reviews") or {}
    last = _last_ai(state["messages"])
    pending = [
        Send(
            "ask",
            {
                "tool_call_id": c["id"],
                "review": reviews[str(c["id"])],
                "run_id": state.get("run_id", ""),
            },
        )
        for c in (last.tool_calls if last else [])
        if reviews.get(str(c["id"]), {}).get("status") == "pending"
    ]
    return pending or "tools"


def _payload(call_id: str, review: Review, ep: Endpoint, error: str | None) -> dict[str, Any]:
    approval_id = review.get("approval_id")
    payload = {
        "type": "approval",
        "approval_id": approval_id,
        "tool_call_id": call_id,
        "tool": review["tool"],
        "endpoint": ep.name,
        "method": ep.method,
        "path": f"/api/v1{prepare(ep, review['args']).path}",
        "args": review["args"],
        "access": ep.access,
        "rule": review.get("rule"),
        "reason": review.get("message"),
        "answers": list(ANSWERS),
        "hint": f"or `closeguard approvals approve {approval_id} --as NAME` elsewhere, then resume "
        "with 'check'",
    }
    if error:
        payload["error"] = error
    return payload


def _ask_node(deps: _Deps) -> Callable[..., Any]:
    async def ask(item: AskInput) -> dict[str, Any]:
        call_id, review = item["tool_call_id"], item["review"]
        _tool, ep = deps.tools[review["tool"]]
        error: str | None = None
        while True:
            settled = await deps.store.run(_settled, deps, review)
            if settled is not None:
                return {"reviews": {call_id: settled}}
            raw = interrupt(_payload(call_id, review, ep, error))
            try:
                answer = parse_answer(raw)
                outcome = await deps.store.run(_apply, deps, review, answer, item["run_id"])
            except AnswerError as exc:
                error = str(exc)
                continue
            if outcome is None:
                error = "the approval is still pending in the store"
                continue
            return {"reviews": {call_id: outcome}}

    return ask


def _settled(deps: _Deps, review: Review) -> Review | None:
    """The review as decided in the approval store, or None while it is pending."""
    approval_id = review.get("approval_id")
    found = deps.approvals.get(approval_id) if approval_id else None
    if found is None:
        return _refused(
            review["tool"],
            review["args"],
            review.get("rule", ""),
            f"approval {approval_id} is gone from the store; not run",
        )
    if found.status == "pending":
        return None
    if found.status == "approved":
        return {**review, "status": "run", "decided_by": found.decided_by}
    if found.status == "rejected":
        note = f": {found.note}" if found.note else ""
        return {
            **review,
            "status": "rejected",
            "decided_by": found.decided_by,
            "message": f"rejected by {found.decided_by}{note}; the call was not made",
        }
    return _refused(
        review["tool"],
        review["args"],
        review.get("rule", ""),
        f"approval {found.id} is {found.status}; the call was not made",
    )


def _apply(deps: _Deps, review: Review, answer: Any, run_id: str) -> Review | None:
    """Record a person's answer in the store; the resulting review (None: still pending)."""
    approval_id = str(review.get("approval_id"))
    who = answer.by or deps.approver
    if answer.action == "check":
        return None
    if answer.action == "edit":
        return _edit(deps, review, answer.args or {}, who, run_id)
    try:
        if answer.action == "approve":
            deps.approvals.approve(approval_id, by=who, via="prompt", channel="agent")
        else:
            deps.approvals.reject(
                approval_id, by=who, note=answer.message, via="prompt", channel="agent"
            )
    except CloseguardError:
        pass  # decided meanwhile (another terminal): the store's first answer stands
    return _settled(deps, review)


def _edit(deps: _Deps, review: Review, args: dict[str, Any], who: str, run_id: str) -> Review:
    """The edited call, checked again; a person's edit is their approval of it."""
    tool, ep = deps.tools[review["tool"]]
    prepared = prepare(ep, validate_args(tool, args))
    edited = _decide(deps, review["tool"], prepared, run_id)
    if edited["status"] == "pending":
        with suppress(CloseguardError):  # already approved for these exact arguments
            deps.approvals.approve(
                str(edited.get("approval_id")),
                by=who,
                note="edited",
                via="prompt",
                channel="agent",
                detail={"edited_from": review.get("approval_id")},
            )
        edited = {**edited, "status": "run", "decided_by": who}
    original = str(review.get("approval_id"))
    if edited.get("approval_id") != original and _pending(deps, original):
        deps.approvals.reject(
            original,
            by=who,
            note="replaced by an edited call",
            via="prompt",
            channel="agent",
            decision="edited",
            detail={"replaced_by": edited.get("approval_id")},
        )
    return edited


def _pending(deps: _Deps, approval_id: str) -> bool:
    found = deps.approvals.get(approval_id)
    return found is not None and found.status == "pending"


def _tools_node(deps: _Deps) -> Callable[..., Any]:
    async def tools(state: AgentState) -> dict[str, Any]:
        last = _last_ai(_before_tool_messages(state["messages"]))
        if last is None:
            return {}
        done = _answered(state["messages"])
        reviews = state.get("reviews") or {}
        out: list[AnyMessage] = []
        for call in last.tool_calls:
            call_id = str(call["id"])
            if call_id in done:
                continue
            review = reviews.get(call_id)
            if review is None or review.get("status") not in ("run", "refused", "rejected"):
                out.append(
                    _error(
                        call_id, call["name"], "not run: this call was never approved by the review"
                    )
                )
            elif review["status"] != "run":
                out.append(_error(call_id, call["name"], review.get("message", "not run")))
            else:
                out.append(await _execute(deps, call_id, review))
        if state.get("stopped") == "calls":
            out.append(
                _stop(
                    f"Stopped: this run reached its limit of "
                    f"{deps.limits.max_tool_calls} tool calls (Limits.max_tool_calls)."
                )
            )
        return {"messages": out}

    return tools


def _before_tool_messages(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Messages up to the last AI message (tool results of its calls may follow it)."""
    out = list(messages)
    while out and isinstance(out[-1], ToolMessage):
        out.pop()
    return out


def _error(call_id: str, tool: str, text: str) -> ToolMessage:
    return ToolMessage(
        content=wrap_result(tool, f"Error: {text}"), tool_call_id=call_id, name=tool, status="error"
    )


@traced(
    "agent.tool_call",
    lambda deps, call_id, review: {
        "tool": review["tool"],
        "actor": deps.actor,
        "policy": deps.policy.name,
    },
)
async def _execute(deps: _Deps, call_id: str, review: Review) -> ToolMessage:
    """Run one reviewed call; errors become an error message for the model."""
    name = review["tool"]
    tool, _ep = deps.tools[name]
    try:
        if isinstance(tool, StructuredTool) and tool.coroutine is not None:
            # The arguments were validated by the review; LangChain's callback machinery
            # would add a quarter of a millisecond per call (bench/agent.py).
            content: Any = await tool.coroutine(**review["args"])
        else:
            result = await tool.ainvoke(
                {"type": "tool_call", "name": name, "args": review["args"], "id": call_id}
            )
            if isinstance(result, ToolMessage) and result.status == "error":
                return _error(call_id, name, str(result.content))
            content = result.content if isinstance(result, ToolMessage) else result
    except (CloseguardError, ToolException, ValidationError, ValueError) as exc:
        return _error(call_id, name, str(exc))
    return ToolMessage(content=wrap_result(name, str(content)), tool_call_id=call_id, name=name)


async def _route_tools(state: AgentState) -> str:
    return END if state.get("stopped") else "model"


# -- assembly ----------------------------------------------------------------------------


def build_agent(
    model: BaseChatModel,
    policy: Policy | Guarded,
    client: CloseClient,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    tools: Sequence[BaseTool] | None = None,
    limits: Limits | None = None,
    store: Store | None = None,
    approver: str | None = None,
    today: Callable[[], date] = date.today,
) -> Agent:
    """The compiled agent graph for ``model`` acting through ``client`` under ``policy``.

    ``client`` must be guarded by the same policy (``Guarded(policy, store=...)``): the graph's
    review pre-checks, the client's transport enforces. Approvals live in ``store`` (the
    bound policy's, else the default store). Only tools the policy could ever allow are
    offered; ``tools`` narrows them further. ``approver`` names who answers at the prompt.
    """
    bound = policy if isinstance(policy, Guarded) else None
    guard = policy.guard if isinstance(policy, Guarded) else Guard(policy)
    store = store or (bound.store if bound is not None else None) or default_store()
    offered = {ep.name for ep in offered_endpoints(guard)}
    candidates = list(tools) if tools is not None else make_tools(client)
    table: dict[str, tuple[BaseTool, Endpoint]] = {}
    for tool in candidates:
        name = (tool.metadata or {}).get("endpoint")
        if name in offered:
            table[tool.name] = (tool, BY_NAME[name])
    strict = wants_strict_tools(model)
    offered_tools = [t for t, _ in table.values()]
    deps = _Deps(
        model=(
            model.bind_tools([strict_tool_spec(t) for t in offered_tools], strict=True)
            if strict
            else model.bind_tools(offered_tools)
        ),
        strict=strict,
        guard=guard,
        store=store,
        approvals=Approvals(store),
        audit=AuditLog(store),
        tools=table,
        limits=limits or Limits(),
        actor=client.actor,
        approver=approver or client.actor or _user(),
        summary=policy_summary(guard.policy, [ep for _, ep in table.values()], guard),
        today=today,
        client=client,
        triggered_leads=bound.triggered_leads if bound is not None else None,
    )
    graph = StateGraph(AgentState)
    graph.add_node("start", _start)
    graph.add_node("model", _model_node(deps))
    graph.add_node("review", _review_node(deps))
    graph.add_node("ask", _ask_node(deps), input_schema=AskInput)
    graph.add_node("tools", _tools_node(deps))
    graph.add_edge(START, "start")
    graph.add_edge("start", "model")
    graph.add_conditional_edges("model", _route_model, ["review", "ask", "tools", END])
    graph.add_conditional_edges("review", _route_review, ["ask", "tools"])
    graph.add_edge("ask", "tools")
    graph.add_conditional_edges("tools", _route_tools, ["model", END])
    return graph.compile(checkpointer=checkpointer, name="closeguard-agent")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "chat-user"
