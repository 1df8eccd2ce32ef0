"""The downtime drill's short version: events made while the runtime is down come back
through Event Log catch-up, each run once; Close's late webhook retries add nothing."""

from __future__ import annotations

from closeguard.drills import downtime_drill
from closeguard.store import Store


async def test_an_hour_down_loses_and_repeats_nothing(store: Store) -> None:
    figures = await downtime_drill(store, events=40)
    assert figures.caught_up == figures.events == 40
    assert figures.late_webhooks_new == 0
    assert (figures.runs_completed, figures.runs_other) == (40, 0)
    assert (figures.lost, figures.duplicated) == (0, 0)
