"""What a workflow is: a trigger, a policy and steps, and the context a step is given.

A workflow is written as plain async step functions; the runtime turns the steps into a
LangGraph graph (one node per step, run with a checkpointer whose thread id is the run
id; a fresh run that needs no checkpoint runs its steps straight and enters the graph only
when a step stops), so a run waiting for a human approval, or stopped by a failure, resumes
in the step that stopped, and a run cut off by a crash starts again where it last stopped
(or from its first step: ``ctx.effect`` writes are not made twice)::

    async def add_task(ctx: Context) -> None:
        opp = ctx.event_data
        await ctx.effect(
            "task",
            lambda: ctx.client.tasks.create({"lead_id": opp["lead_id"], "text": "Call"}),
        )

    WORKFLOW = Workflow(
        name="call-on-new-opportunity",
        trigger=EventTrigger("opportunity", "created"),
        policy="follow-up-on-status-change",
        steps=(add_task,),
    )

Steps share ``ctx.state`` (a JSON-ready dict, saved in the run's checkpoint when it stops;
after each step when the workflow ``uses_llm``, so a crash does not ask the model again).
Every Close call goes through ``ctx.client``, a ``CloseClient`` guarded by the workflow's
policy with the workflow's name as the actor and the run id as ``run_id``. A write whose
repetition would be visible (a created task, a note) goes through ``ctx.effect``, the
effect journal, so a retried run never writes it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from closeguard.guardrails.policy import Policy

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from closeguard.tools.client import CloseClient
    from closeguard.workflows.facts import RunFacts

_MISSING = object()


def dotted(obj: Any, path: str) -> Any:
    """``obj["a"]["b"]`` for ``"a.b"``; a missing part gives ``_MISSING``."""
    for part in path.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _field_matches(source: Mapping[str, Any], rules: Mapping[str, Any]) -> bool:
    """Every rule holds: a value is equality, a list/tuple/set is membership."""
    for path, expected in rules.items():
        value = dotted(source, path)
        if value is _MISSING:
            return False
        if isinstance(expected, list | tuple | set | frozenset):
            if value not in expected:
                return False
        elif value != expected:
            return False
    return True


@dataclass(frozen=True)
class EventTrigger:
    """Fires on a Close event (webhook delivery or Event Log entry) that matches.

    ``changed_fields``: each must be in the event's ``changed_fields``. ``data`` and
    ``previous_data``: dotted paths into the event's ``data``/``previous_data`` whose values
    must equal the given value (or be one of a given list).
    """

    object_type: str
    action: str | tuple[str, ...]
    changed_fields: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    previous_data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def actions(self) -> tuple[str, ...]:
        return (self.action,) if isinstance(self.action, str) else self.action

    def matches(self, event: Mapping[str, Any]) -> bool:
        if event.get("object_type") != self.object_type:
            return False
        if event.get("action") not in self.actions:
            return False
        changed = event.get("changed_fields") or ()
        if any(name not in changed for name in self.changed_fields):
            return False
        return _field_matches(event.get("data") or {}, self.data) and _field_matches(
            event.get("previous_data") or {}, self.previous_data
        )


@dataclass(frozen=True)
class ScheduleTrigger:
    """Fires on a schedule: a crontab expression (``"0 8 * * 1-5"``) or an interval."""

    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a ScheduleTrigger takes exactly one of cron= or every=")


@dataclass(frozen=True)
class ManualTrigger:
    """Runs only when asked (``closeguard workflows run NAME --param k=v``)."""

    required: tuple[str, ...] = ()


Trigger = EventTrigger | ScheduleTrigger | ManualTrigger


class Context(Protocol):
    """What a step is given. The runtime provides it; tests may provide their own."""

    @property
    def workflow(self) -> Workflow: ...
    @property
    def run_id(self) -> str: ...
    @property
    def client(self) -> CloseClient: ...
    @property
    def event(self) -> Mapping[str, Any] | None:
        """The triggering Close event (event triggers), else None."""
        ...

    @property
    def event_data(self) -> Mapping[str, Any]:
        """The event's ``data`` (the object after the change), or an empty mapping."""
        ...

    @property
    def lead_id(self) -> str | None:
        """The lead the run is about, as it is now: the event's lead, or the destination
        its merges led to (the run follows them). Write to this lead and read your earlier
        writes back from it, not from the event's ``lead_id``."""
        ...

    @property
    def facts(self) -> RunFacts:
        """Organization facts that rarely change (the key's user, members, statuses,
        pipelines, custom fields), read once per process (``workflows.facts``)."""
        ...

    @property
    def tick(self) -> datetime | None:
        """The scheduled time of this tick (schedule triggers), else None."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """The workflow's defaults, overridden by ``--param`` / configuration."""
        ...

    @property
    def state(self) -> dict[str, Any]:
        """JSON-ready values the steps share, saved with the run's checkpoint."""
        ...

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...
    @property
    def llm(self) -> BaseChatModel | None:
        """The configured chat model, or None when no model is configured."""
        ...

    def now(self) -> datetime:
        """The current time (the runtime's clock: fake in tests and evals)."""
        ...

    async def turn(self, rotation: str, users: Sequence[str]) -> str:
        """The next of ``users`` in the durable round robin ``rotation`` (a counter in the
        store per set of users, one atomic step per lead): the run's lead takes one turn,
        and a retried run, or another run for that lead, gets the same user back."""
        ...

    async def effect(
        self,
        key: str,
        write: Callable[[], Awaitable[Any]],
        *,
        find: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """Do a write at most once per run and key, journaled.

        The journal records the intent before ``write`` and its result after. If the run is
        retried and the journal already has the result, it is returned without calling
        anything. If only the intent is there (the process died mid-call), ``find`` reads
        Close back: what it finds counts as the result; ``None`` means the write did not
        land, and it is made now. The result comes back as JSON data (a pydantic model as
        its dict), the same on the first run and on a replay.
        """
        ...


Step = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Workflow:
    """A named sales-ops rule: trigger, least-privilege policy, steps, parameters.

    ``lead_of`` names the lead a run is about (runs for one lead execute in order, and a
    policy's ``scope: triggered`` constraints admit that lead); by default the event's
    ``lead_id`` (or ``data.lead_id``), and None for schedules and manual runs.

    ``follow_merges``: a run whose lead was merged away continues on the destination
    (``ctx.lead_id``); False ends it ``skipped`` instead (a rule about the merged-away lead
    itself, such as merging it, has nothing left to do).

    ``uses_llm``: a step asks a model (``ctx.llm``); such a run also saves a checkpoint
    after each step, so a crash does not ask the model again.
    """

    name: str
    trigger: Trigger
    policy: str | Policy
    steps: Sequence[Step]
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    lead_of: Callable[[Mapping[str, Any]], str | None] | None = None
    uses_llm: bool = False
    follow_merges: bool = True

    def lead_for(self, event: Mapping[str, Any] | None) -> str | None:
        if event is None:
            return None
        if self.lead_of is not None:
            return self.lead_of(event)
        lead = event.get("lead_id") or (event.get("data") or {}).get("lead_id")
        if lead is None and event.get("object_type") == "lead":
            lead = event.get("object_id")
        return str(lead) if lead else None

    def load_policy(self) -> Policy:
        return self.policy if isinstance(self.policy, Policy) else Policy.load(self.policy)
