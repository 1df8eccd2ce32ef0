"""Reliability and security drills (issue 14): repeatable runs whose figures go into
docs/reliability.md. Each drill returns plain counts (tried, completed, lost, duplicated,
blocked, reached) so a test can assert them and ``closeguard drill`` can print them."""

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
