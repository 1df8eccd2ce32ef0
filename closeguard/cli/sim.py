"""``closeguard sim``: serve the Close simulator over HTTP, or write a seeded world file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from closeguard.simulator import Simulator, WorldFileError
from closeguard.simulator.ratelimit import RateLimits
from closeguard.simulator.webhooks import with_dispatcher

app = typer.Typer(help="Run the Close simulator or generate worlds for it.", no_args_is_help=True)

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the generated world.")]
LeadsOpt = Annotated[
    int, typer.Option("--leads", min=0, max=100_000, help="How many leads to generate.")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8765,
    seed: SeedOpt = 1,
    leads: LeadsOpt = 200,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Also accept this API key (or Bearer token).")
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            "--rate-limit",
            min=0,
            help="Calls per second per key and endpoint group (the organization gets 3x). "
            "Default: Close-like 40 reads and 20 writes per second; 0 turns limits off.",
        ),
    ] = None,
    world: Annotated[
        Path | None, typer.Option("--world", help="Serve this saved world instead of a seed.")
    ] = None,
) -> None:
    """Serve the simulator at http://HOST:PORT/api/v1 until interrupted."""
    import uvicorn

    limits = (
        RateLimits()
        if rate_limit is None
        else RateLimits(rps=rate_limit)
        if rate_limit > 0
        else None
    )
    keys = [api_key] if api_key else []
    try:
        sim = (
            Simulator.load(world, api_keys=keys, rate_limits=limits)
            if world is not None
            else Simulator(seed=seed, leads=leads, api_keys=keys, rate_limits=limits)
        )
    except WorldFileError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Close simulator at http://{host}:{port}/api/v1")
    typer.echo(f"API key: {api_key or sim.api_key}")
    typer.echo(
        f"{len(sim.state['leads'])} leads, organization {sim.state.organization_id}"
        + (
            ", no rate limits"
            if limits is None
            else f", rate limit {rate_limit} rps per key"
            if rate_limit
            else f", rate limits {limits.read_rps:g} reads / {limits.write_rps:g} writes per "
            "second per key"
        )
    )
    try:
        served = with_dispatcher(sim.app, sim.webhooks)  # deliver webhooks while serving
        uvicorn.run(served, host=host, port=port, log_level="warning")
    except OSError as exc:
        raise _fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


@app.command("seed")
def seed_world(
    out: Annotated[Path, typer.Option("--out", help="World JSON file to write.")],
    seed: SeedOpt = 1,
    leads: LeadsOpt = 200,
) -> None:
    """Generate a seeded world and save it as JSON (serve it with ``sim serve --world``)."""
    sim = Simulator(seed=seed, leads=leads)
    try:
        sim.save(out)
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {out}: seed {seed}, {leads} leads, state hash {sim.state_hash()[:16]}")
