"""``closeguard drill``: the reliability and security drills of docs/reliability.md."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import JsonOpt, console, fail, print_json
from closeguard.drills import PROFILES, attack_drill, downtime_drill, fault_matrix
from closeguard.drills.battery import DrillResult, Sizes, run_battery
from closeguard.drills.crash import crash_drill
from closeguard.drills.receiver import receiver_drill
from closeguard.store import Store

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["drill"].help)

SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, metavar="N", help="Fault seeds per task.")]


def _show(title: str, rows: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        print_json(rows)
        return
    table = Table(title=title)
    for key in rows[0]:
        if key != "failures":
            table.add_column(key)
    for row in rows:
        table.add_row(*(str(v) for k, v in row.items() if k != "failures"))
    console(120).print(table)
    for row in rows:
        for failure in row.get("failures") or []:
            console(120).print(f"  [yellow]{row.get('profile', '')}[/] {failure}")


@app.command("faults")
def faults(
    profile: Annotated[
        list[str] | None,
        typer.Option("--profile", "-p", metavar="NAME", help="Only these (repeatable)."),
    ] = None,
    seeds: SeedsOpt = 1,
    json_out: JsonOpt = False,
) -> None:
    """Every sales-ops and workflows task under each fault profile: completed, lost, duplicated."""
    names = profile or list(PROFILES)
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        raise fail(f"unknown profile {unknown[0]!r}; known: {', '.join(PROFILES)}")
    started = time.perf_counter()
    figures = asyncio.run(fault_matrix(names, seeds=seeds))
    _show("fault matrix", [asdict(f) for f in figures], json_out)
    if not json_out:
        console(120).print(f"{time.perf_counter() - started:.0f} s")


def _store() -> tuple[Store, tempfile.TemporaryDirectory[str]]:
    folder = tempfile.TemporaryDirectory(prefix="closeguard-drill-")
    return Store(f"sqlite:///{Path(folder.name) / 'drill.db'}"), folder


@app.command("downtime")
def downtime(
    events: Annotated[
        int, typer.Option("--events", min=1, metavar="N", help="Leads created while down.")
    ] = 500,
    json_out: JsonOpt = False,
) -> None:
    """The runtime down for an hour while EVENTS leads arrive; each processed once."""
    store, folder = _store()
    with folder:
        figures = asyncio.run(downtime_drill(store, events=events))
        store.dispose()
    _show("downtime", [asdict(figures)], json_out)


@app.command("attack")
def attack(
    calls: Annotated[
        int, typer.Option("--calls", min=1, metavar="N", help="Random calls per shipped policy.")
    ] = 200,
    policies: Annotated[
        int, typer.Option("--policies", min=0, metavar="N", help="Random policies.")
    ] = 20,
    policy_calls: Annotated[
        int | None,
        typer.Option(
            "--policy-calls",
            min=1,
            metavar="N",
            help="Random calls per random policy and entry point (default: CALLS / 5).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed.")] = 0,
    trials: Annotated[
        int,
        typer.Option("--trials", min=0, metavar="N", help="Injection suite trials (0: skip it)."),
    ] = 1,
    json_out: JsonOpt = False,
) -> None:
    """The injection suite, random calls under every shipped policy, and random policies
    attacked through the client, the agent, a workflow and the MCP gateway: none may reach
    Close, and the guard must agree with an independent oracle. Exits 1 otherwise."""
    store, folder = _store()
    with folder:
        figures = asyncio.run(
            attack_drill(
                store,
                calls=calls,
                policies=policies,
                policy_calls=policy_calls,
                seed=seed,
                trials=trials,
            )
        )
        store.dispose()
    if json_out:
        print_json([asdict(figures)])
    else:
        summary = {
            k: v for k, v in asdict(figures).items() if k not in ("entry_points", "findings")
        }
        summary["seconds"] = round(sum(figures.seconds.values()), 1)
        _show("guard under attack", [summary], False)
        short = {"approvals": "asked", "mismatches": "mismatch", "wrongly_blocked": "wrong"}
        rows = [
            {
                "entry": name,
                **{short.get(k, k): v for k, v in asdict(entry).items()},
                "s": figures.seconds.get(name),
            }
            for name, entry in figures.entry_points.items()
        ]
        _show("random calls per entry point", rows, False)
        for finding in figures.findings:
            console(120).print(f"  [red]{finding}[/]")
    if figures.reached or figures.attacks_succeeded or figures.mismatches:
        raise typer.Exit(1)


@app.command("crash")
def crash(
    kills: Annotated[
        int, typer.Option("--kills", min=1, metavar="N", help="Worker SIGKILLs.")
    ] = 50,
    runs: Annotated[int, typer.Option("--runs", min=1, metavar="N", help="Runs queued.")] = 600,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Random seed of the kill points.")
    ] = 0,
    pg: Annotated[
        str | None,
        typer.Option("--pg", metavar="URL", help="An empty PostgreSQL database to run on."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """A worker SIGKILLed at random points KILLS times while RUNS runs drain."""
    with tempfile.TemporaryDirectory(prefix="closeguard-drill-") as folder:
        figures = asyncio.run(
            crash_drill(Path(folder), kills=kills, runs=runs, seed=seed, store_url=pg)
        )
    _show("crash", [asdict(figures)], json_out)


@app.command("receiver")
def receiver(
    deliveries: Annotated[
        int, typer.Option("--deliveries", min=1, metavar="N", help="Signed deliveries sent.")
    ] = 2000,
    kill_after: Annotated[
        int, typer.Option("--kill-after", min=1, metavar="N", help="Kill after N answered.")
    ] = 300,
    json_out: JsonOpt = False,
) -> None:
    """The receiver SIGKILLed mid-burst, restarted, the unanswered sent again."""
    with tempfile.TemporaryDirectory(prefix="closeguard-drill-") as folder:
        figures = asyncio.run(
            receiver_drill(Path(folder), deliveries=deliveries, kill_after=kill_after)
        )
    _show("receiver kill", [asdict(figures)], json_out)


@app.command("all")
def all_drills(
    pg: Annotated[
        str | None,
        typer.Option(
            "--pg",
            metavar="URL",
            help="A PostgreSQL server: adds the crash drill there, in a scratch database "
            "created and dropped by the drill.",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="NAME", help="Only these drills (repeatable)."),
    ] = None,
    seeds: SeedsOpt = 1,
    json_out: JsonOpt = False,
) -> None:
    """Every drill, one after another: faults, crash (SQLite, and PostgreSQL with --pg),
    receiver, downtime, attack. Exits 1 if anything was lost, duplicated or let through."""
    sizes = Sizes(fault_seeds=seeds)
    started = time.perf_counter()

    def progress(name: str, result: DrillResult | None) -> None:
        if json_out:
            return
        if result is None:
            console(120).print(f"[bold]{name}[/] ...")
        else:
            mark = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
            console(120).print(f"  {mark} {result.tried} ({result.seconds:.0f} s)")

    results = asyncio.run(run_battery(sizes, pg=pg, only=only, progress=progress))
    if json_out:
        print_json([asdict(r) for r in results])
    else:
        table = Table(title="drills")
        for column in ("drill", "tried", "lost", "duplicated", "reached Close", "s", "result"):
            table.add_column(column)
        for r in results:
            verdict = "[green]PASS[/]" if r.ok else "[red]FAIL[/]"
            cells = (r.tried, str(r.lost), str(r.duplicated), str(r.reached), f"{r.seconds:.0f}")
            table.add_row(r.drill, *cells, verdict)
        console(120).print(table)
        console(120).print(f"{time.perf_counter() - started:.0f} s in all")
    if not all(r.ok for r in results):
        raise typer.Exit(1)
