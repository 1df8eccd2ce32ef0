"""``StepContext``: the runtime's ``Context``, what each step of a run is given."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from closeguard.store.rotation import Rotation
from closeguard.tools.clock import Clock, SystemClock
from closeguard.workflows.definition import Workflow
from closeguard.workflows.effects import EffectJournal
from closeguard.workflows.facts import RunFacts

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from closeguard.guardrails import Guarded, Policy
    from closeguard.tools.client import CloseClient

__all__ = ["RUN_LOGGER", "StepContext", "run_logger"]

RUN_LOGGER = "closeguard.workflows.run"
_LOG = logging.getLogger(RUN_LOGGER)


def run_logger(workflow: str, run_id: str) -> logging.LoggerAdapter[logging.Logger]:
    """The run's logger: every record carries ``workflow`` and ``run_id``."""
    return logging.LoggerAdapter(_LOG, {"workflow": workflow, "run_id": run_id})


@dataclass
class StepContext:
    """One run's view for its steps (see ``closeguard.workflows.definition.Context``)."""

    workflow: Workflow
    run_id: str
    client: CloseClient
    journal: EffectJournal
    facts: RunFacts
    lead_id: str | None = None
    event: Mapping[str, Any] | None = None
    tick: datetime | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    llm: BaseChatModel | None = None
    clock: Clock = field(default_factory=SystemClock)
    open_client: Callable[[Policy, str], tuple[Guarded, CloseClient]] | None = None
    """Another client for this run under ``policy``, audited as ``actor`` (a rule's agent
    step acts under its own policy, not the workflow's)."""
    checkpointer: BaseCheckpointSaver[Any] | None = None
    """The executor's checkpointer (a rule's agent step keeps its thread there)."""
    log: logging.LoggerAdapter[logging.Logger] = field(init=False)

    def __post_init__(self) -> None:
        self.log = run_logger(self.workflow.name, self.run_id)

    @property
    def event_data(self) -> Mapping[str, Any]:
        """The event's ``data`` (the object after the change), or an empty mapping."""
        return (self.event or {}).get("data") or {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    async def turn(self, rotation: str, users: Sequence[str]) -> str:
        subject = self.workflow.lead_for(self.event) or self.run_id
        turns = self.journal.turns
        taken = turns.taken(self.run_id, rotation, subject, users)
        if taken is None:
            store = self.journal.store
            taken = await store.run(Rotation(store).take, rotation, subject, users)
        turns.hint(self.workflow.name, self.run_id, rotation, users)
        return taken.user_id

    async def effect(
        self,
        key: str,
        write: Callable[[], Awaitable[Any]],
        *,
        find: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        return await self.journal.effect(
            self.run_id, key, write, find=find, scope=self.workflow.name
        )
