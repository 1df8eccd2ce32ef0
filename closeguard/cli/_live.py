"""The live view of ``closeguard run``: events, runs and actions as they happen.

On a terminal, a Rich ``Live`` panel redrawn a few times a second; otherwise (piped, CI,
``--plain``) one plain line per activity.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from closeguard.workflows.activity import Activity

__all__ = ["LiveView", "PlainView", "View"]

RUN_STYLE = {
    "completed": "green",
    "waiting_approval": "yellow",
    "retrying": "yellow",
    "failed": "red",
    "dead": "red",
    "rejected": "magenta",
}


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


class PlainView:
    """One line per activity."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def add(self, activity: Activity) -> None:
        run = f" [{activity.run_id}]" if activity.kind == "run" and activity.run_id else ""
        line = f"{_clock(activity.at)} {activity.kind:<6} {activity.text}{run}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LiveView:
    """A redrawn panel: the header, recent events, runs (latest status each), actions."""

    def __init__(self, console: Console, title: str, *, rows: int = 8) -> None:
        self.console = console
        self.title = title
        self.started = time.monotonic()
        self.events: deque[Activity] = deque(maxlen=rows)
        self.actions: deque[Activity] = deque(maxlen=rows)
        self.notes: deque[Activity] = deque(maxlen=4)
        self.runs: OrderedDict[str, Activity] = OrderedDict()
        self.rows = rows
        self.counts: dict[str, int] = {}
        self._live = Live(self, console=console, refresh_per_second=4, transient=False)

    def add(self, activity: Activity) -> None:
        self.counts[activity.kind] = self.counts.get(activity.kind, 0) + 1
        if activity.kind in ("event", "tick"):
            self.events.append(activity)
        elif activity.kind == "action":
            self.actions.append(activity)
        elif activity.kind == "run" and activity.run_id:
            self.runs.pop(activity.run_id, None)
            self.runs[activity.run_id] = activity
            while len(self.runs) > self.rows + 2:
                self.runs.popitem(last=False)
        else:
            self.notes.append(activity)

    def _table(self, title: str, items: list[Activity], style_of: Any = None) -> Table:
        table = Table(title=title, title_justify="left", expand=True, show_header=False)
        table.add_column("time", style="dim", min_width=8, max_width=8, no_wrap=True)
        table.add_column("what", overflow="ellipsis", no_wrap=True, ratio=1)
        for item in items:
            style = style_of(item) if style_of else None
            table.add_row(_clock(item.at), Text(item.text, style=style or ""))
        return table

    def __rich__(self) -> Group:
        elapsed = time.monotonic() - self.started
        header = Text.assemble(
            (self.title, "bold"),
            f"   {elapsed:5.0f}s   events {self.counts.get('event', 0)}"
            f"   ticks {self.counts.get('tick', 0)}   actions {self.counts.get('action', 0)}",
        )
        notes = Group(*(Text(n.text, style="cyan") for n in self.notes))
        return Group(
            Panel(Group(header, notes), border_style="blue"),
            self._table("Events", list(self.events)),
            self._table(
                "Runs", list(self.runs.values()), lambda a: RUN_STYLE.get(a.status or "", "")
            ),
            self._table("Actions (Close writes)", list(self.actions)),
        )

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)


View = LiveView | PlainView
