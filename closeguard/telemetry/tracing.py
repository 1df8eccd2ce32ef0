"""Spans: OpenTelemetry when the standard ``OTEL_*`` variables ask for it, nothing otherwise.

``with span("close.request", actor=..., policy=...) as s: ...; s.set(status=200)`` is the
one call instrumented code makes. Tracing is on when ``OTEL_TRACES_EXPORTER`` names an
exporter (``console``, ``otlp``; a comma list) and ``OTEL_SDK_DISABLED`` is not ``true``;
the SDK is imported then, on the first span (or by ``configure()`` when a serving command
starts), never otherwise. Off, ``span`` returns one shared do-nothing object.

Attributes are scalars named ``closeguard.<key>`` (``status`` becomes
``http.response.status_code``); ``None`` values are left out. Callers pass identifiers and
outcomes only (actor, policy, endpoint, decision, approval and run ids, Close's status),
never arguments or credentials: nothing here looks inside a value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from functools import wraps
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

__all__ = [
    "TracingConfigError",
    "active",
    "configure",
    "current",
    "enabled",
    "reset",
    "span",
    "traced",
    "use",
]

log = logging.getLogger("closeguard.telemetry")

P = ParamSpec("P")
T = TypeVar("T")

SERVICE = "closeguard"
OTLP_EXTRA = "pip install 'closeguard[otel-otlp]'"
Scalar = str | bool | int | float


class TracingConfigError(Exception):
    """The ``OTEL_*`` variables ask for something this installation cannot do."""


class _Off:
    """The span of a process that does not trace: entering, setting and leaving do nothing."""

    __slots__ = ()

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, **attrs: Scalar | None) -> None:
        return None


_OFF = _Off()
_UNSET: Any = object()
_tracer: Any = _UNSET
"""``_UNSET`` until the environment is read; then ``None`` (off) or an SDK tracer."""
_provider_set = False


def _attributes(attrs: Mapping[str, Scalar | None]) -> dict[str, Scalar]:
    return {
        ("http.response.status_code" if k == "status" else f"closeguard.{k}"): v
        for k, v in attrs.items()
        if v is not None
    }


class _Live:
    """A started span; ``set`` adds attributes; leaving ends it.

    An exception leaving the block marks the span an error naming the exception's class
    only: messages may quote a call's arguments or Close's answer, so none is recorded.
    """

    __slots__ = ("_cm", "_span")

    def __init__(self, tracer: Any, name: str, attrs: Mapping[str, Scalar | None]) -> None:
        self._cm = tracer.start_as_current_span(
            name,
            attributes=_attributes(attrs),
            record_exception=False,
            set_status_on_exception=False,
        )
        self._span: Any = None

    def __enter__(self) -> _Live:
        self._span = self._cm.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_attribute("closeguard.error", kind.__name__)
            self._span.set_status(Status(StatusCode.ERROR, kind.__name__))
        self._cm.__exit__(kind, exc, tb)

    def set(self, **attrs: Scalar | None) -> None:
        self._span.set_attributes(_attributes(attrs))


def span(name: str, **attrs: Scalar | None) -> _Off | _Live:
    """A span named ``name`` around a ``with`` block (see the module doc)."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    if tracer is _UNSET:
        tracer = _from_env()
        if tracer is None:
            return _OFF
    return _Live(tracer, name, attrs)


def traced(
    name: str, attrs: Callable[..., Mapping[str, Scalar | None]] | None = None
) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
    """Decorate a coroutine function so each call runs in a span ``name``; ``attrs`` maps the
    call's arguments to the span's attributes. Off, the call costs one attribute read more."""

    def wrap(fn: Callable[P, Any]) -> Callable[P, Any]:
        @wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> Any:
            if _tracer is None:
                return await fn(*args, **kwargs)
            with span(name, **(attrs(*args, **kwargs) if attrs else {})):
                return await fn(*args, **kwargs)

        return call

    return wrap


def active() -> bool:
    """Whether spans are being recorded now (does not read the environment)."""
    return _tracer is not None and _tracer is not _UNSET


def current(**attrs: Scalar | None) -> None:
    """Add attributes to the span in progress (the innermost ``span`` of this task), if any."""
    if not active():
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_attributes(attrs))


def enabled() -> bool:
    """Whether spans are recorded (reads the environment the first time)."""
    return (_from_env() if _tracer is _UNSET else _tracer) is not None


def _wanted(env: Mapping[str, str]) -> list[str]:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n and n != "none"]


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=env.get("OTEL_SERVICE_NAME") or SERVICE)
    if name == "otlp":
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        try:
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                    OTLPSpanExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
        except ImportError:
            package = "opentelemetry-exporter-otlp-proto-" + (
                "grpc" if protocol == "grpc" else "http"
            )
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER=otlp needs {package}: {OTLP_EXTRA}"
            ) from None
        return OTLPSpanExporter()
    raise TracingConfigError(
        f"OTEL_TRACES_EXPORTER={name!r} is not supported: use console, otlp or none"
    )


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Read the ``OTEL_*`` variables and start tracing if they ask for it; whether it is on.

    Raises ``TracingConfigError`` for an exporter that cannot be made (a serving command
    calls this at start, so a wrong setting is one line there, not a silent gap later).
    """
    global _tracer
    env = os.environ if env is None else env
    names = _wanted(env)
    if not names:
        _tracer = None
        return False
    exporters = [_exporter(n, env) for n in names]
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    given = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE}
    provider = TracerProvider(resource=Resource.create(given))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    global _provider_set
    if not _provider_set:  # the global provider can be set once; other libraries see ours
        trace.set_tracer_provider(provider)
        _provider_set = True
    _tracer = provider.get_tracer("closeguard")
    return True


def _from_env() -> Any:
    try:
        configure()
    except TracingConfigError as exc:
        global _tracer
        log.warning("tracing is off: %s", exc)
        _tracer = None
    return _tracer


def use(provider: Any) -> None:
    """Trace through ``provider`` (an SDK ``TracerProvider``; tests give one with an in-memory
    exporter), whatever the environment says; ``reset()`` goes back to it."""
    global _tracer
    _tracer = cast(Any, provider).get_tracer("closeguard")


def reset() -> None:
    """Forget the tracer: the next span reads the environment again."""
    global _tracer
    _tracer = _UNSET
