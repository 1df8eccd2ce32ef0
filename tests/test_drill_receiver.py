"""The receiver-kill drill's short version: the receiver process SIGKILLed mid-burst and
restarted; every delivery answered 200 is stored, every event once."""

from __future__ import annotations

from pathlib import Path

from closeguard.drills.receiver import receiver_drill


async def test_a_killed_receiver_loses_no_acknowledged_delivery(tmp_path: Path) -> None:
    figures = await receiver_drill(tmp_path, deliveries=300, kill_after=60)
    assert 60 <= figures.answered_before_kill < 300
    assert (figures.stored, figures.lost, figures.duplicated) == (300, 0, 0)
