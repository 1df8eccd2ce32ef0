"""Observing a unit of work in one ``with``: its span, its outcome counter and its duration."""

from __future__ import annotations

import time
from types import TracebackType

from closeguard.telemetry import metrics, tracing

__all__ = ["RunObserver", "observe_run"]


class RunObserver:
    """The ``workflow.run`` span and the run metrics of one execution; set ``outcome`` inside
    the block (an exception leaving it counts as ``error``)."""

    __slots__ = ("_span", "_started", "outcome", "workflow")

    def __init__(self, workflow: str, run_id: str, attempt: int) -> None:
        self.workflow = workflow
        self.outcome = "error"
        self._span = tracing.span("workflow.run", workflow=workflow, run_id=run_id, attempt=attempt)
        self._started = 0.0

    def __enter__(self) -> RunObserver:
        self._started = time.perf_counter()
        self._span.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcome = self.outcome if kind is None else "error"
        metrics.record_run(self.workflow, outcome, time.perf_counter() - self._started)
        self._span.set(outcome=outcome)
        self._span.__exit__(kind, exc, tb)


def observe_run(workflow: str, run_id: str, attempt: int = 1) -> RunObserver:
    """``with observe_run(name, run_id) as seen: outcome = ...; seen.outcome = outcome.status``."""
    return RunObserver(workflow, run_id, attempt)
