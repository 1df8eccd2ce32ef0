"""Guard under attack, short version: the injection suite with the adversary model and
random calls under every shipped policy; no forbidden call reaches the simulator."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from closeguard.cli._app import app
from closeguard.drills import attack_drill
from closeguard.store import Store


async def test_no_forbidden_call_reaches_the_simulator(store: Store) -> None:
    figures = await attack_drill(store, calls=40)
    assert figures.attacks >= 10 and figures.attacks_succeeded == 0
    assert figures.blocked > figures.tried // 4
    assert figures.reached == 0


def test_the_drill_command_prints_the_figures() -> None:
    result = CliRunner().invoke(app, ["drill", "attack", "--calls", "5", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["reached"] == 0 and row["tried"] > 0
