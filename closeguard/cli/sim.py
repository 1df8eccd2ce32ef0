"""``closeguard sim``: serve the Close simulator over HTTP, or write a seeded world file."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import fail
from closeguard.simulator import Simulator
from closeguard.simulator.ratelimit import RateLimits
from closeguard.simulator.webhooks import with_dispatcher

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["sim"].help, no_args_is_help=True)

SeedOpt = Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the generated world.")]
LeadsOpt = Annotated[
    int,
    typer.Option("--leads", min=0, max=100_000, metavar="N", help="How many leads to generate."),
]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error (exit 1) if it is taken."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _limits(rate_limit: float | None) -> RateLimits | None:
    if rate_limit is None:
        return RateLimits()
    return RateLimits(rps=rate_limit) if rate_limit > 0 else None


def _describe(limits: RateLimits | None, rate_limit: float | None) -> str:
    if limits is None:
        return "no rate limits"
    if rate_limit:
        return f"rate limit {rate_limit:g} calls per second per key"
    return f"rate limits {limits.read_rps:g} reads / {limits.write_rps:g} writes per second per key"


@app.command("serve")
def serve(
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface to bind.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, metavar="PORT", help="TCP port (0: any free port)."
        ),
    ] = 8765,
    seed: SeedOpt = 1,
    leads: LeadsOpt = 200,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            help="Also accept KEY (as API key or Bearer token). Without it, only the world's own "
            "key is accepted: it is printed at start and is the same for the same --seed.",
        ),
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            "--rate-limit",
            min=0,
            metavar="RPS",
            help="Calls per second per key and endpoint group (the organization gets 3x). "
            "Default: Close-like 40 reads and 20 writes per second; 0 turns limits off.",
        ),
    ] = None,
    world: Annotated[
        Path | None,
        typer.Option("--world", metavar="FILE", help="Serve this saved world instead of a seed."),
    ] = None,
) -> None:
    """Serve the simulator at http://HOST:PORT/api/v1 until interrupted (Ctrl-C)."""
    import uvicorn

    limits = _limits(rate_limit)
    keys = [api_key] if api_key else []
    sim = (
        Simulator.load(world, api_keys=keys, rate_limits=limits)
        if world is not None
        else Simulator(seed=seed, leads=leads, api_keys=keys, rate_limits=limits)
    )
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    typer.echo(f"Close simulator at http://{host}:{bound_port}/api/v1")
    typer.echo(f"API key: {sim.api_key}" + (f" (and {api_key})" if api_key else ""))
    typer.echo(
        f"{len(sim.state['leads'])} leads, organization {sim.state.organization_id}, "
        f"{_describe(limits, rate_limit)}"
    )
    served = with_dispatcher(sim.app, sim.webhooks)  # deliver webhooks while serving
    server = uvicorn.Server(uvicorn.Config(served, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@app.command("seed")
def seed_world(
    out: Annotated[
        Path, typer.Option("-o", "--out", metavar="FILE", help="The world JSON file to write.")
    ],
    seed: SeedOpt = 1,
    leads: LeadsOpt = 200,
) -> None:
    """Generate a seeded world and save it as JSON (serve it with: sim serve --world FILE)."""
    sim = Simulator(seed=seed, leads=leads)
    try:
        sim.save(out)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {out}: seed {seed}, {leads} leads, state hash {sim.state_hash()[:16]}")
