"""Reliability and security drills (issue 14): repeatable runs whose figures go into
docs/reliability.md. Each drill returns plain counts (tried, completed, lost, duplicated,
blocked, reached) so a test can assert them and ``closeguard drill`` can print them.

The names below load their module on first use: the crash drill starts a worker process
(``python -m closeguard.drills._crash_worker``) fifty times, and importing every drill (the
attack drill pulls in the agent, the evals and the MCP SDK) would cost it 3 s a start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeguard.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from closeguard.drills.attack import AttackFigures, attack_drill
    from closeguard.drills.downtime import DowntimeFigures, downtime_drill
    from closeguard.drills.faults import PROFILES, FaultFigures, fault_matrix

__all__ = [
    "PROFILES",
    "AttackFigures",
    "DowntimeFigures",
    "FaultFigures",
    "attack_drill",
    "downtime_drill",
    "fault_matrix",
]

_HOME = {
    "PROFILES": "faults",
    "FaultFigures": "faults",
    "fault_matrix": "faults",
    "AttackFigures": "attack",
    "attack_drill": "attack",
    "DowntimeFigures": "downtime",
    "downtime_drill": "downtime",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME)
