"""Operating closeguard: spans, metrics, health endpoints and JSON logs.

The bottom of the import table beside ``tools``: it imports nothing of closeguard, so the
client, the guard, the runtime and the console can all report through it. OpenTelemetry's
SDK and ``prometheus_client`` are imported only when tracing or metrics are switched on.

- ``tracing``: ``span(name, **attrs)``, a no-op unless the ``OTEL_*`` variables ask;
- ``metrics``: the Prometheus registry and the ``record_*`` calls (off until ``enable()``);
- ``health``: ``Probes``, the ``/healthz``, ``/readyz`` and ``/metrics`` ASGI endpoints;
- ``logs``: the ``--log-format json`` formatter.
"""

from closeguard.telemetry import health as health
from closeguard.telemetry import logs as logs
from closeguard.telemetry import metrics as metrics
from closeguard.telemetry import tracing as tracing
from closeguard.telemetry.health import Probes
from closeguard.telemetry.tracing import span

__all__ = ["Probes", "health", "logs", "metrics", "span", "tracing"]
