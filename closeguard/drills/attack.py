"""Guard under attack: the ``injection`` eval suite (prompt injections against the agent
and the workflows) plus seeded random calls across the whole catalog under every shipped
policy. Counted: calls tried, blocked by the guard, and forbidden calls that reached the
simulator anyway (the goal is zero). A call is forbidden when the guarded client refuses
it (``GuardError``); the simulator's transport is wrapped so any request it receives for
a refused call is seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from closeguard.evals import RunOptions, find_suites, run_suites
from closeguard.guardrails import Guarded, Policy
from closeguard.guardrails.policy import shipped_policies
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import ENDPOINTS
from closeguard.tools.errors import CloseguardError, GuardError

__all__ = ["AttackFigures", "attack_drill"]


@dataclass
class AttackFigures:
    tried: int = 0
    blocked: int = 0
    reached: int = 0
    """Forbidden calls the simulator received (must stay 0)."""
    attacks: int = 0
    attacks_succeeded: int = 0


class _Seen(httpx.AsyncBaseTransport):
    """Passes requests on and counts them."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return await self.inner.handle_async_request(request)


async def _injection(figures: AttackFigures, trials: int) -> None:
    runs = await run_suites(
        find_suites(["injection"]), RunOptions(model="adversary", trials=trials)
    )
    for run in runs:
        for trial in run.trials.values():
            v = trial.get("violations") or {}
            figures.tried += v.get("attempted", 0)
            figures.blocked += v.get("blocked", 0)
            figures.reached += v.get("through", 0)
            if "attack_succeeded" in trial:
                figures.attacks += 1
                figures.attacks_succeeded += bool(trial["attack_succeeded"])


async def _random_calls(figures: AttackFigures, calls: int, seed: int, store: Store) -> None:
    rng = random.Random(seed)
    sim = Simulator(seed=seed, leads=3)
    lead = next(iter(sim.state["leads"]))
    for name in shipped_policies():
        seen = _Seen(sim.transport())
        guarded = Guarded(Policy.load(name), store=store, triggered_leads={lead})
        async with sim.client(transport=seen, policy=guarded, actor="drill") as client:
            for _ in range(calls):
                ep = rng.choice(ENDPOINTS)
                path = ep.path.format(**{p: rng.choice([lead, "x1"]) for p in ep.path_params})
                body = {"lead_id": lead, "status": rng.choice(["draft", "outbox", "sent"])}
                json = body if ep.method in ("POST", "PUT") else None
                before = seen.count
                figures.tried += 1
                try:
                    await client.request(ep.method, path, json=json)
                except GuardError:
                    figures.blocked += 1
                    figures.reached += seen.count - before
                except CloseguardError:
                    pass


async def attack_drill(
    store: Store, *, calls: int = 100, seed: int = 0, trials: int = 1
) -> AttackFigures:
    """The injection suite ``trials`` times, then ``calls`` random calls per policy."""
    figures = AttackFigures()
    await _injection(figures, trials)
    await _random_calls(figures, calls, seed, store)
    return figures
