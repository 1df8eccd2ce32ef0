"""Prometheus metrics on the project's own registry, recorded only once ``enable()`` ran.

Serving processes (``closeguard run``, ``closeguard console``) enable them at start; until
then every ``record_*`` function returns at once and ``prometheus_client`` is not imported,
so a command that serves nothing pays nothing. Labels are bounded: workflow and policy
names, decisions, outcomes, reasons and HTTP statuses; never an id or personal data.

Counters and histograms are fed where things happen (the receiver, the worker, the audit
log, the client's pacing). Gauges that describe the store (inbox depth, queue age, pending
approvals, runs by status) are read from it at scrape time by the samplers the serving
process registers (``set_sampler``), so every process reports the shared store's state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

__all__ = [
    "CONTENT_TYPE",
    "Sample",
    "enable",
    "enabled",
    "exposition",
    "record_audit",
    "record_audit_written",
    "record_delivery",
    "record_rate_wait",
    "record_run",
    "registry",
    "set_sampler",
]

log = logging.getLogger("closeguard.telemetry")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DECIDE = "DECIDE"
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
SAMPLE_TIMEOUT = 5.0

Sample = Mapping[str, float | Mapping[str, float]]
"""What a sampler reads: ``inbox_depth``, ``queue_age_seconds``, ``approvals_pending``, and
``runs`` (status -> count); a key left out is not reported."""
Sampler = Callable[[], Awaitable[Sample]]

GAUGES: dict[str, tuple[str, str | None]] = {
    "inbox_depth": ("Events in the inbox not yet turned into runs.", None),
    "queue_age_seconds": ("Seconds the oldest claimable queued run has waited.", None),
    "approvals_pending": ("Approval requests waiting for a decision.", None),
    "runs": ("Runs in the store by status.", "status"),
}


class _Metrics:
    """The metric objects, made on the registry when metrics are enabled."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "closeguard_webhook_deliveries_received",
            "Webhook deliveries received on the receiver's path.",
            registry=r,
        )
        self.refused = Counter(
            "closeguard_webhook_deliveries_refused",
            "Webhook deliveries refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.stored = Counter(
            "closeguard_webhook_deliveries_stored",
            "Webhook deliveries stored in the inbox (duplicates included).",
            registry=r,
        )
        self.runs = Counter(
            "closeguard_runs_finished",
            "Run executions by workflow and outcome (one per attempt).",
            ["workflow", "outcome"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "closeguard_run_duration_seconds",
            "Time a worker spent executing a run (one attempt), by workflow.",
            ["workflow"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "closeguard_guard_decisions",
            "Guard decisions on calls, by policy and decision.",
            ["policy", "decision"],
            registry=r,
        )
        self.approvals_decided = Counter(
            "closeguard_approvals_decided",
            "Approval requests decided, by decision (approved, rejected, expired).",
            ["decision"],
            registry=r,
        )
        self.close_requests = Counter(
            "closeguard_close_requests",
            "Requests Close answered, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "closeguard_close_rate_limited",
            "Close answers with status 429 (rate limited).",
            registry=r,
        )
        self.rate_wait = Counter(
            "closeguard_rate_limit_wait_seconds",
            "Seconds spent waiting for Close's rate limit before sending.",
            registry=r,
        )
        self.audit_rows = Counter(
            "closeguard_audit_rows_written",
            "Rows committed to the audit log.",
            registry=r,
        )
        self.samplers: dict[str, Sampler] = {}
        self.sampled: dict[str, float | Mapping[str, float]] = {}
        self._children: dict[tuple[str, ...], Any] = {}
        r.register(_Sampled(self))

    def child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class _Sampled:
    """A collector yielding the gauges the samplers read last."""

    def __init__(self, metrics: _Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for key, (doc, label) in GAUGES.items():
            value = self.metrics.sampled.get(key)
            if value is None:
                continue
            name = f"closeguard_{key}"
            if label is None:
                assert not isinstance(value, Mapping)
                yield GaugeMetricFamily(name, doc, value=value)
            else:
                assert isinstance(value, Mapping)
                family = GaugeMetricFamily(name, doc, labels=[label])
                for labelled, count in sorted(value.items()):
                    family.add_metric([labelled], count)
                yield family


_m: _Metrics | None = None


def enable() -> None:
    """Start recording (idempotent): the registry and its metrics are made the first time."""
    global _m
    if _m is None:
        _m = _Metrics()


def enabled() -> bool:
    return _m is not None


def registry() -> Any:
    """The project's ``CollectorRegistry`` (enables metrics)."""
    enable()
    assert _m is not None
    return _m.registry


def set_sampler(key: str, sampler: Sampler | None) -> None:
    """Read store gauges with ``sampler`` at each scrape; one per ``key`` (a store's URL), so
    the runtime and the console of one process on one store do not count twice."""
    enable()
    assert _m is not None
    if sampler is None:
        _m.samplers.pop(key, None)
    else:
        _m.samplers[key] = sampler


async def exposition() -> bytes:
    """The registry in Prometheus' text format, store gauges read afresh."""
    from prometheus_client import generate_latest

    enable()
    assert _m is not None
    sampled: dict[str, float | Mapping[str, float]] = {}
    for key, sampler in list(_m.samplers.items()):
        try:
            sampled.update(await asyncio.wait_for(sampler(), SAMPLE_TIMEOUT))
        except Exception as exc:
            log.warning("metrics: could not read the store's gauges (%s): %s", key, exc)
    _m.sampled = sampled
    return generate_latest(_m.registry)


# -- recording: each returns at once while metrics are off -----------------------------------


def record_delivery(outcome: str) -> None:
    """A webhook delivery: ``received`` on arrival, then ``stored`` or a refusal's reason."""
    m = _m
    if m is None:
        return
    if outcome == "received":
        m.received.inc()
    elif outcome == "stored":
        m.stored.inc()
    else:
        m.child(m.refused, outcome).inc()


def record_run(workflow: str, outcome: str, seconds: float) -> None:
    m = _m
    if m is None:
        return
    m.child(m.runs, workflow, outcome).inc()
    m.child(m.run_seconds, workflow).observe(seconds)


def record_audit(method: str, policy: str | None, decision: str, status: int | None) -> None:
    """One audit row queued: a guard decision (and Close's status), or an approval's decision."""
    m = _m
    if m is None:
        return
    if method == DECIDE:
        m.child(m.approvals_decided, decision).inc()
        return
    m.child(m.decisions, policy or "-", decision).inc()
    if status is not None:
        m.child(m.close_requests, str(status)).inc()
        if status == 429:
            m.rate_limited.inc()


def record_audit_written(rows: int) -> None:
    m = _m
    if m is not None and rows:
        m.audit_rows.inc(rows)


def record_rate_wait(seconds: float) -> None:
    m = _m
    if m is not None and seconds > 0:
        m.rate_wait.inc(seconds)
