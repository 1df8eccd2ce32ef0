"""A Close organization in a box: an ASGI app faithful to Close's API.

Owns the simulated state, routes per resource, the Event Log, signed webhook delivery,
rate limits, faults, seeded worlds and the canonical state hash. Depends on ``tools``
(catalog and models) only. Start with ``Simulator`` (``closeguard.simulator.core``).
"""

from closeguard.simulator.app import Backend, build_app
from closeguard.simulator.clock import Clock, FakeClock, SystemClock
from closeguard.simulator.core import BASE_URL, Simulator
from closeguard.simulator.events import EventLog
from closeguard.simulator.faults import FaultConfig, FaultInjector, HTTPFaults, WebhookFaults
from closeguard.simulator.hashing import ObjectChange, StateDiff, diff, snapshot, state_hash
from closeguard.simulator.ratelimit import RateLimiter, RateLimits
from closeguard.simulator.state import OrgState
from closeguard.simulator.webhooks import RetryPolicy, WebhookDispatcher, sign, verify_signature
from closeguard.simulator.world import WorldFileError, generate_world, load_world, save_world

__all__ = [
    "BASE_URL",
    "Backend",
    "Clock",
    "EventLog",
    "FakeClock",
    "FaultConfig",
    "FaultInjector",
    "HTTPFaults",
    "ObjectChange",
    "OrgState",
    "RateLimiter",
    "RateLimits",
    "RetryPolicy",
    "Simulator",
    "StateDiff",
    "SystemClock",
    "WebhookDispatcher",
    "WebhookFaults",
    "WorldFileError",
    "build_app",
    "diff",
    "generate_world",
    "load_world",
    "save_world",
    "sign",
    "snapshot",
    "state_hash",
    "verify_signature",
]
