"""Running one workflow run: its steps as a LangGraph graph, checkpointed where it stops.

A fresh execution of a workflow that asks no model runs its steps straight, without the
graph (``Executor._straight``); only a step that stops hands the run to the graph, with the
checkpoint and the stop the graph would have recorded, so everything below holds for it.

Each step is a node (``START -> 1_step -> 2_step -> ... -> END``) and the graph runs with a
checkpointer whose thread id is the run id, held while the run executes
(``workflows.checkpoints``): a run stopped by an approval, a failure or a limit keeps one
checkpoint and resumes in the step that stopped; a run that completes keeps none; a run cut
off by a crash starts again from its last kept checkpoint (or its first step), the effect
journal replaying the writes it had made.

A step whose call needs approval (the guard raises ``ApprovalRequired``) stops the run with
an ``interrupt()`` carrying the approval id; ``resume`` with that id and ``approved`` runs
the step again, and the guard then uses the granted approval for exactly that call. A
rejected approval ends the run as ``rejected`` (the worker does not re-run the step, which
would only ask again). Writes made before the approval are in the effect journal, so the
re-run does not repeat them.

What the run is about may be gone by the time it runs. Before it starts, the merge map and
the deletions the intake saw (``store.fates``) are looked up, without a call: a run whose
lead was merged away continues on the last destination (``ctx.lead_id``, and the guard's
``scope: triggered`` admits that lead), and a run whose lead, deal or task was deleted ends
``skipped`` with the reason. A run that meets the news itself (Close answers 404, or 400
"does not exist") asks Close once, under the ``lead-fates`` policy: the object is there (a
real failure), or the Event Log's deletion event names a merge (recorded, and the run
re-runs its step on the destination) or a plain delete (``skipped``); a lead gone without
its deletion event in the log yet is a transient failure, retried later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, TypedDict

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from closeguard.guardrails import AuditLog, Guard, Guarded, Policy
from closeguard.store import Store
from closeguard.store.fates import GONE_TYPES, Fate, LeadFates, merge_of
from closeguard.telemetry import span
from closeguard.tools import CloseClient
from closeguard.tools import models as m
from closeguard.tools.budget import RateBudget
from closeguard.tools.clock import Clock, SystemClock
from closeguard.tools.errors import (
    ApprovalRequired,
    BadRequest,
    CloseConnectionError,
    CloseguardError,
    NotFound,
    PolicyViolation,
    QuotaExhausted,
    RateLimited,
    ServerError,
)
from closeguard.workflows.activity import Activity, Feed
from closeguard.workflows.checkpoints import Held, RunCheckpoints
from closeguard.workflows.context import StepContext
from closeguard.workflows.definition import Step, Workflow
from closeguard.workflows.effects import EffectJournal
from closeguard.workflows.facts import OrgFacts, RunFacts

__all__ = ["Executor", "Outcome", "OutcomeStatus", "RunRejected", "RunSpec", "is_transient"]

OutcomeStatus = Literal[
    "completed", "failed", "waiting_approval", "rejected", "deferred", "skipped"
]
_HANDLE = "closeguard_run"
_STOPPED = "closeguard_stopped"
"""The exception that stopped a straight run's step, for its node to raise again."""
log = logging.getLogger("closeguard.workflows.executor")
FATES_POLICY = "lead-fates"
FATES_ACTOR = "closeguard-fates"
MAX_FOLLOWS = 5
"""Merges a run may learn of by itself and follow in one execution."""


class RunState(TypedDict):
    state: dict[str, Any]


class RunRejected(CloseguardError):
    """The approval a run was waiting for was rejected (or expired)."""


@dataclass(frozen=True)
class RunSpec:
    """What one run is about: its id (the LangGraph thread id) and its trigger."""

    run_id: str
    workflow: str
    event: Mapping[str, Any] | None = None
    tick: datetime | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    lead_id: str | None = None
    fate: Fate | None = None
    """What became of ``lead_id``, read when the run was claimed (None: ask the store)."""


@dataclass(frozen=True)
class Outcome:
    """How an execution ended. ``transient``: a failure worth retrying later;
    ``deferred`` until ``retry_at``: a per-window limit of the policy ran out; ``skipped``:
    moot, what the run is about no longer exists (``error`` says what). ``lead_id``: the
    lead the run went on to when it followed a merge (None when it stayed)."""

    status: OutcomeStatus
    state: dict[str, Any]
    error: str | None = None
    approval_id: str | None = None
    transient: bool = False
    retry_at: float | None = None
    progressed: bool = False
    """A failed attempt that still journaled a new write (it did not fail where it began)."""
    lead_id: str | None = None
    missing: bool = False
    """Failed on Close saying something is not there (404, or 400 "does not exist")."""


def is_transient(exc: BaseException) -> bool:
    """Close or the network failing for now (5xx, 429, no answer): retry the run later."""
    return isinstance(exc, ServerError | RateLimited | CloseConnectionError | httpx.TransportError)


def is_missing(exc: BaseException) -> bool:
    """Close says the object asked for (or written to) does not exist."""
    if isinstance(exc, NotFound):
        return True
    if isinstance(exc, BadRequest):
        detail = json.dumps([exc.errors, exc.field_errors, str(exc)], default=str)
        return "does not exist" in detail.lower()
    return False


def describe(exc: BaseException) -> str:
    """One line for a run's error: the class and message (a policy denial names its rule)."""
    text = str(exc).strip() or traceback.format_exception_only(exc)[-1].strip()
    return f"{type(exc).__name__}: {text}"[:2000]


class _Observed(httpx.AsyncBaseTransport):
    """A run's view of the shared transport: each write that reached Close goes to the feed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, feed: Feed, workflow: str, run_id: str):
        self.inner = inner
        self.feed = feed
        self.workflow = workflow
        self.run_id = run_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "GET" or response.status_code >= 400:
            path = request.url.path.removeprefix("/api/v1")
            text = f"{self.workflow}: {request.method} {path} -> {response.status_code}"
            self.feed.emit(
                Activity("action", text, self.workflow, self.run_id, str(response.status_code))
            )
        return response

    async def aclose(self) -> None:
        return None


class _Unclosed(httpx.AsyncBaseTransport):
    """A shared transport that a run's client may not close."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


def _answer_for(exc: ApprovalRequired) -> Mapping[str, Any]:
    """Stop for ``exc``'s approval; on resume, the answer given for it.

    Answers are matched by approval id: a resumed step may pass an earlier approval (now
    granted) and stop at another, whose interrupt then gets a fresh index.
    """
    payload = {"approval_id": exc.approval_id, "reason": str(exc)}
    while True:
        answer = interrupt(payload)
        if isinstance(answer, Mapping) and answer.get("approval_id") == exc.approval_id:
            return answer


async def _run_step(step: Step, ctx: StepContext, *, last: bool = False) -> None:
    """One step on ``ctx`` in its span, then its writes' results committed (the step's
    checkpoint, if one is made, follows them); after the ``last`` step of a run that asks
    no model none is kept, so its results ride the run's outcome instead."""
    called = getattr(step, "__name__", "step")
    with span("workflow.step", step=called, workflow=ctx.workflow.name, run_id=ctx.run_id):
        await step(ctx)
    if not last or ctx.workflow.uses_llm:
        await ctx.journal.flush(ctx.run_id)


def _node_names(workflow: Workflow) -> list[str]:
    return [
        f"{index}_{getattr(step, '__name__', 'step')}"
        for index, step in enumerate(workflow.steps, start=1)
    ]


def _node(step: Step, *, last: bool = False) -> Any:
    async def node(state: RunState, config: RunnableConfig) -> RunState:
        ctx: StepContext = config["configurable"][_HANDLE]
        stopped: list[BaseException] = config["configurable"].get(_STOPPED) or []
        start = dict(state.get("state") or {})
        while True:
            try:
                if stopped:
                    raise stopped.pop()
                ctx.state = dict(start)
                await _run_step(step, ctx, last=last)
            except ApprovalRequired as exc:
                answer = _answer_for(exc)
                if answer.get("status") != "approved":
                    raise RunRejected(
                        f"approval {exc.approval_id} was {answer.get('status')}"
                    ) from None
                continue
            return {"state": ctx.state}

    return node


def build_graph(
    workflow: Workflow, checkpointer: BaseCheckpointSaver[Any] | None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The workflow's steps as a linear LangGraph graph, one node per step."""
    graph: StateGraph[Any, Any, Any, Any] = StateGraph(RunState)
    previous = START
    names = _node_names(workflow)
    for name, step in zip(names, workflow.steps, strict=True):
        graph.add_node(name, _node(step, last=name == names[-1]))
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer)


class Executor:
    """Runs workflow runs against Close (or a simulator) through each one's guard.

    ``transport``: the httpx transport under the guard (a simulator's in tests, one shared
    connection pool for real Close when None). ``checkpointer``: LangGraph's, where each run
    is the thread named by its run id.
    """

    def __init__(
        self,
        *,
        store: Store,
        checkpointer: BaseCheckpointSaver[Any],
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        base_url: str | None = None,
        clock: Clock | None = None,
        llm: BaseChatModel | None = None,
        feed: Feed | None = None,
        budget: RateBudget | None = None,
        facts: OrgFacts | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.budget = budget
        self.checkpointer = checkpointer
        self.checkpoints = RunCheckpoints(checkpointer)
        """The graphs' view of ``checkpointer``: a run's saves are held while it executes."""
        self.api_key = api_key
        self.transport = _Unclosed(transport or httpx.AsyncHTTPTransport())
        self.base_url = base_url
        self.clock = clock or SystemClock()
        self.llm = llm
        self.journal = EffectJournal(store)
        self.facts = facts or OrgFacts(clock=self.clock)
        """Organization facts, shared by every run of this executor (the process)."""
        self.fates = LeadFates(store)
        self._fates_policy: Policy | None = None
        self._graphs: dict[int, CompiledStateGraph[Any, Any, Any, Any]] = {}
        self._guards: dict[int, Guard] = {}
        self.defer_audit = False
        """Leave the last audit rows of each run's client for ``take_audit`` (the worker
        writes them in the transaction that records the run's outcome)."""
        self.audits: dict[str, AuditLog] = {}

    def graph(self, workflow: Workflow) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The workflow's graph, compiled once per executor."""
        key = id(workflow)
        if key not in self._graphs:
            self._graphs[key] = build_graph(workflow, self.checkpoints)
        return self._graphs[key]

    def guard(self, workflow: Workflow) -> Guard:
        """The workflow's decisions, precomputed once (loading the policy file once)."""
        key = id(workflow)
        if key not in self._guards:
            self._guards[key] = Guard(workflow.load_policy())
        return self._guards[key]

    def fates_client(self, spec: RunSpec) -> CloseClient:
        """The client that asks what became of a run's lead (``lead-fates``: reads only),
        audited under the run."""
        if self._fates_policy is None:
            self._fates_policy = Policy.load(FATES_POLICY)
        return CloseClient(
            self.api_key,
            base_url=self.base_url,
            transport=self.transport,
            policy=Guarded(self._fates_policy, store=self.store, clock=self.clock),
            actor=FATES_ACTOR,
            run_id=spec.run_id,
            clock=self.clock,
            budget=self.budget,
        )

    def client(self, workflow: Workflow, spec: RunSpec) -> CloseClient:
        """The run's client: guarded by the workflow's policy, audited as its name and run."""
        decisions = self.guard(workflow)
        audit = None
        if self.defer_audit:
            audit = self.audits[spec.run_id] = AuditLog(self.store)
        return self.guarded_client(
            decisions.policy, workflow.name, spec, guard=decisions, audit=audit
        )[1]

    def take_audit(self, run_id: str) -> AuditLog | None:
        """The audit log of the run's client whose last rows are not written yet (with
        ``defer_audit``): now the caller's to write (``AuditLog.write_in``) or flush."""
        return self.audits.pop(run_id, None)

    def guarded_client(
        self,
        policy: Policy,
        actor: str,
        spec: RunSpec,
        *,
        guard: Guard | None = None,
        audit: AuditLog | None = None,
    ) -> tuple[Guarded, CloseClient]:
        """A client for ``spec``'s run under ``policy`` (its lead in scope), audited as
        ``actor``, with the guard it is bound to; ``audit``: its audit log, whose last rows
        the caller writes (``take_audit``)."""
        guarded = Guarded(
            policy,
            guard=guard,
            store=self.store,
            triggered_leads=None if spec.lead_id is None else {spec.lead_id},
            clock=self.clock,
            audit=audit,
            flush_on_close=audit is None,
        )
        transport: httpx.AsyncBaseTransport = self.transport
        if self.feed is not None:
            transport = _Observed(transport, self.feed, actor, spec.run_id)
        client = CloseClient(
            self.api_key,
            base_url=self.base_url,
            transport=transport,
            policy=guarded,
            actor=actor,
            run_id=spec.run_id,
            clock=self.clock,
            budget=self.budget,
        )
        return guarded, client

    async def forget(self, run_id: str) -> None:
        """Delete a completed run's checkpoints (its LangGraph thread).

        A finished run never resumes, and its outcome and state are in the run's record, so
        the checkpoint it stopped at before (an approval's, a failure's) would only pile up.
        Only for runs recorded ``completed``: a failed or dead run keeps its own, for ``runs
        retry``. A run whose execution here saved nothing and found nothing costs no call.
        """
        if not self.checkpoints.unsaved(run_id):
            await self.checkpoints.adelete_thread(run_id)

    async def execute(
        self, workflow: Workflow, spec: RunSpec, *, resume: Mapping[str, Any] | None = None
    ) -> Outcome:
        """Run (or continue) ``spec`` to its end or its next approval.

        A run with a checkpoint continues where it stopped (it is over only when no task is
        left: a process killed after a step's writes but before the next checkpoint leaves
        ``next`` empty with work to do); ``resume`` answers the approval it waits for
        (``{"approval_id": ..., "status": "approved" | "rejected"}``).
        """
        made = self.journal.made[spec.run_id]
        first = spec.lead_id
        try:
            for _ in range(MAX_FOLLOWS):
                where = await self._where(workflow, spec)
                if isinstance(where, Outcome):
                    return where
                spec = where
                moved = spec.lead_id if spec.lead_id != first else None
                outcome = replace(await self._execute(workflow, spec, resume, made), lead_id=moved)
                if not outcome.missing or outcome.transient:
                    return outcome
                found = await self._probe(workflow, spec)
                if found is None:
                    return outcome
                if isinstance(found, Outcome):
                    return replace(found, lead_id=moved)
            return outcome
        finally:
            self.journal.made.pop(spec.run_id, None)

    def _skipped(self, reason: str, lead_id: str | None = None) -> Outcome:
        return Outcome("skipped", {}, error=reason, lead_id=lead_id)

    async def _where(self, workflow: Workflow, spec: RunSpec) -> RunSpec | Outcome:
        """Where the run goes by what the store knows (no call): ``spec`` on its lead's
        last destination, or ``skipped``."""
        event = spec.event or {}
        if event.get("action") == "deleted":
            return spec  # a rule about deletions runs on what is gone
        known, spec = spec.fate, replace(spec, fate=None)
        if spec.lead_id is not None:
            fate = (
                known
                if known is not None
                else await self.store.run(self.fates.resolve, spec.lead_id)
            )
            if fate.merged_from:
                if not workflow.follow_merges:
                    return self._skipped(f"lead {spec.lead_id} was merged into {fate.lead}")
                spec = replace(spec, lead_id=fate.lead)
            if fate.gone:
                return self._skipped(f"lead {fate.lead} was deleted")
        kind, oid = str(event.get("object_type") or ""), event.get("object_id")
        moot = kind in GONE_TYPES and kind != "lead" and isinstance(oid, str)
        if moot and await self.store.run(self.fates.is_gone, str(oid)):
            return self._skipped(f"{kind} {oid} was deleted")
        return spec

    async def _probe(self, workflow: Workflow, spec: RunSpec) -> RunSpec | Outcome | None:
        """Ask Close what became of the run's deal or task and lead (see the module doc):
        ``spec`` again when a merge was found (now recorded), an outcome, or None when
        everything is there (the failure was real)."""
        event = spec.event or {}
        kind, oid = str(event.get("object_type") or ""), event.get("object_id")
        lead = spec.lead_id
        async with self.fates_client(spec) as client:
            if lead is not None:
                try:
                    await client.leads.get(lead)
                except NotFound:
                    page = await client.events.list(
                        lead_id=lead, object_type="lead", action="deleted", limit=5
                    )
                    return await self._why_gone(lead, page.data, spec)
            if kind in ("opportunity", "task") and isinstance(oid, str):
                accessor = client.opportunities if kind == "opportunity" else client.tasks
                try:
                    await accessor.get(oid)
                except NotFound:
                    await self.store.run(self.fates.record_gone, kind, oid)
                    return self._skipped(f"{kind} {oid} no longer exists")
        return None

    async def _why_gone(
        self, lead: str, deletions: list[m.Event], spec: RunSpec
    ) -> RunSpec | Outcome:
        """A missing lead's deletion events: a merge (recorded; ``spec`` goes on), a plain
        delete (``skipped``), or none yet (a transient failure)."""
        for found in deletions:
            merge = merge_of(found.model_dump(mode="json"))
            if merge is not None and merge[0] == lead:
                await self.store.run(self.fates.record_merge, merge[0], merge[1], found.id)
                return spec
        if deletions:
            await self.store.run(self.fates.record_gone, "lead", lead, deletions[0].id)
            return self._skipped(f"lead {lead} was deleted")
        return Outcome(
            "failed",
            {},
            error=f"lead {lead} no longer exists and Close's Event Log does not say why yet",
            transient=True,
        )

    async def _execute(
        self, workflow: Workflow, spec: RunSpec, resume: Mapping[str, Any] | None, made: int
    ) -> Outcome:
        held = await self.checkpoints.hold(spec.run_id, durable=workflow.uses_llm)
        try:
            outcome = await self._invoke(workflow, spec, resume, made, held)
        except BaseException:
            await asyncio.shield(self._release(held, keep=True))
            raise
        await self._release(held, keep=outcome.status != "completed")
        return outcome

    async def _release(self, held: Held, *, keep: bool) -> None:
        """End the run's hold on its checkpoints, keeping them unless it completed. A save
        that fails is logged, not raised: the outcome stands, and the run's next execution
        starts from its last saved checkpoint (or its first step), as after a crash."""
        try:
            await self.checkpoints.release(held, keep=keep)
        except Exception:
            log.warning(
                "run %s: its checkpoint could not be saved; a later execution starts again "
                "from the one before (the effect journal replays its writes)",
                held.thread_id,
                exc_info=True,
            )

    async def _invoke(
        self,
        workflow: Workflow,
        spec: RunSpec,
        resume: Mapping[str, Any] | None,
        made: int,
        held: Held,
    ) -> Outcome:
        graph = self.graph(workflow)
        async with self.client(workflow, spec) as client:
            decisions = self.guard(workflow)
            ctx = StepContext(
                workflow=workflow,
                run_id=spec.run_id,
                client=client,
                journal=self.journal,
                facts=RunFacts(
                    self.facts, client, lambda name: decisions.static(name, "read").allowed
                ),
                lead_id=spec.lead_id,
                event=spec.event,
                tick=spec.tick,
                params={**workflow.params, **spec.params},
                llm=self.llm,
                clock=self.clock,
                open_client=lambda policy, actor: self.guarded_client(policy, actor, spec),
                checkpointer=self.checkpointer,
            )
            config: RunnableConfig = {
                "configurable": {"thread_id": spec.run_id, _HANDLE: ctx},
                "recursion_limit": len(workflow.steps) + 10,
            }
            payload: Any = {"state": {}}
            if held.loaded is not None:
                snapshot = await graph.aget_state(config)
                if snapshot.values and not snapshot.tasks:
                    return Outcome("completed", dict(snapshot.values.get("state") or {}))
                if resume is not None and snapshot.interrupts:
                    payload = Command(resume=dict(resume))
                elif snapshot.values:
                    payload = None
            elif not held.durable:
                stop = await self._straight(workflow, graph, ctx, config)
                if stop is None:
                    return Outcome("completed", dict(ctx.state))
                if stop:
                    payload = None
            try:
                result = await graph.ainvoke(
                    payload, config, durability="sync" if held.durable else "exit"
                )
            except RunRejected as exc:
                return Outcome("rejected", dict(ctx.state), error=describe(exc))
            except QuotaExhausted as exc:
                state = dict(ctx.state)
                return Outcome("deferred", state, error=describe(exc), retry_at=exc.retry_at)
            except PolicyViolation as exc:
                return Outcome("failed", dict(ctx.state), error=describe(exc))
            except Exception as exc:
                return Outcome(
                    "failed",
                    dict(ctx.state),
                    error=describe(exc),
                    transient=is_transient(exc),
                    progressed=self.journal.made[spec.run_id] > made,
                    missing=is_missing(exc) and spec.lead_id is not None,
                )
            state = dict(result.get("state") or {})
            interrupts = result.get("__interrupt__") or ()
            if interrupts:
                value = interrupts[0].value
                return Outcome("waiting_approval", state, approval_id=value.get("approval_id"))
            return Outcome("completed", state)

    async def _straight(
        self,
        workflow: Workflow,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        ctx: StepContext,
        config: RunnableConfig,
    ) -> int | None:
        """Run a fresh run's steps in order without LangGraph; None when all completed.

        A step that stops (an approval, a failure, a limit) hands the run over to the graph
        as LangGraph would have left it: the checkpoint after the last completed step
        (held, as the graph's own would be), and the stop for that step's node to raise
        again, so the graph records the interrupt or the error and every later path
        (resume, retry, recovery) runs as for a graph that ran from the start. Returns the
        index of the stopped step (0: the graph starts from its input). A cancellation
        keeps the checkpoint after the last completed step and propagates.
        """
        state: dict[str, Any] = {}
        for index, step in enumerate(workflow.steps):
            ctx.state = dict(state)
            try:
                await _run_step(step, ctx, last=index == len(workflow.steps) - 1)
            except Exception as exc:
                config["configurable"][_STOPPED] = [exc]
                if index:
                    await self._hand_over(workflow, graph, config, index, state)
                return index
            except BaseException:
                if index:
                    await asyncio.shield(self._hand_over(workflow, graph, config, index, state))
                raise
            state = ctx.state
        return None

    async def _hand_over(
        self,
        workflow: Workflow,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        config: RunnableConfig,
        index: int,
        state: dict[str, Any],
    ) -> None:
        """Make the checkpoint the graph makes after step ``index - 1`` (0-based) completes."""
        await graph.aupdate_state(
            config, {"state": dict(state)}, as_node=_node_names(workflow)[index - 1]
        )
