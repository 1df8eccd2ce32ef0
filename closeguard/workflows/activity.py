"""What the runtime is doing, as a stream of small records for a live view or a log.

The inbox, the schedules, the workers and each run's Close calls report here; ``closeguard
run`` draws them. Listeners are called in the event loop and must not block.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Activity", "ActivityKind", "Feed"]

ActivityKind = Literal["event", "tick", "run", "action", "note"]

log = logging.getLogger("closeguard.workflows.activity")


@dataclass(frozen=True)
class Activity:
    """One thing that happened. ``status``: a run's (``started``, ``completed``, ...), an
    event's (``new``, ``duplicate``) or an action's HTTP status."""

    kind: ActivityKind
    text: str
    workflow: str | None = None
    run_id: str | None = None
    status: str | None = None
    at: float = field(default_factory=time.time)


class Feed:
    """Fans activities out to listeners; a failing listener is logged, never raised."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[Activity], None]] = []

    def emit(self, activity: Activity) -> None:
        for listener in self.listeners:
            try:
                listener(activity)
            except Exception:
                log.exception("activity listener failed")
