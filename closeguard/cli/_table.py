"""Plain-text tables for the listing commands: aligned columns, colours on a terminal.

Rich's ``Table`` measured and laid out every cell through its renderables: on a listing
command it cost more than the query behind it (``closeguard catalog``: ~60 ms of ~200 ms
on a quiet machine, plus ~25 ms to import Rich). These tables are what ``kubectl get`` or
``ps`` print: a title, a header, columns padded with two spaces. Piped, lines are never
wrapped, so ``grep`` and ``awk`` see one row a line (a cell of several lines, such as
an endpoint's events, continues on the next lines); on a terminal, columns marked
``wrap`` are wrapped to fit its width.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from collections.abc import Sequence

import typer

__all__ = ["Cell", "Table", "styled"]

_GAP = "  "
_MIN_WRAPPED = 12


class Cell(str):
    """Cell text with a style, shown only where colours are (``styled``)."""

    style: str = ""


def styled(text: str, style: str | None) -> Cell:
    """``text`` in ``style``: a colour name (``green``), ``bold`` and/or ``dim``, space
    separated (``"bold red"``); None or empty: plain."""
    cell = Cell(text)
    cell.style = style or ""
    return cell


def _unpainted(text: str, cell: str, bold: bool) -> str:
    return text


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """``text`` with control characters other than newlines written as ``\\xNN``: a value
    from Close (a lead's name in an error, a path) must not move the cursor or recolour
    the terminal."""
    if not _CONTROL.search(text):
        return text
    cleaned = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return styled(cleaned, text.style) if isinstance(text, Cell) else cleaned


class Table:
    """Columns of text under an optional title and header; ``print`` writes it."""

    def __init__(self, *columns: str, title: str | None = None, show_header: bool = True) -> None:
        self.title = title
        self.show_header = show_header
        self.columns: list[str] = []
        self.wrap: list[bool] = []
        self.bold: list[bool] = []
        self.rows: list[list[str]] = []
        for name in columns:
            self.add_column(name)

    def add_column(self, name: str, *, wrap: bool = True, bold: bool = False) -> None:
        """A column; ``wrap=False`` keeps its cells whole even on a narrow terminal."""
        self.columns.append(name)
        self.wrap.append(wrap)
        self.bold.append(bold)

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([_visible(cell) for cell in cells])

    def lines(self, width: int | None = None, *, color: bool = False) -> list[str]:
        """The table as lines, columns wrapped to ``width`` where allowed (None: never);
        ``color``: with the cells' styles as terminal codes."""
        paint = self._paint if color else _unpainted
        widths = [len(name) if self.show_header else 0 for name in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], *(len(part) for part in cell.split("\n")))
        if width is not None:
            widths = self._fit(widths, width)
        out = [paint(_visible(self.title), "", True)] if self.title else []
        if self.show_header:
            bold = [paint(c, "", True) for c in self.columns]
            out.append(self._line(bold, widths, self.columns))
            rules = ["-" * w for w in widths]
            out.append(self._line(rules, widths, rules))
        for row in self.rows:
            parts = [self._parts(cell, widths[i], self.wrap[i]) for i, cell in enumerate(row)]
            for k in range(max(len(p) for p in parts)):
                out.append(
                    self._line(
                        [
                            paint(p[k] if k < len(p) else "", row[i], self.bold[i])
                            for i, p in enumerate(parts)
                        ],
                        widths,
                        [p[k] if k < len(p) else "" for p in parts],
                    )
                )
        return out

    def print(self) -> None:
        """Write the table to stdout: wrapped to the terminal's width on a terminal. The
        styles are always written; ``echo`` drops them where colours do not belong."""
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        typer.echo("\n".join(self.lines(width, color=True)))

    def _fit(self, widths: list[int], width: int) -> list[int]:
        """Narrow the widest wrappable columns until the table fits in ``width``."""
        widths = list(widths)
        excess = sum(widths) + len(_GAP) * (len(widths) - 1) - width
        while excess > 0:
            candidates = [i for i, w in enumerate(widths) if self.wrap[i] and w > _MIN_WRAPPED]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            cut = min(excess, widths[widest] - _MIN_WRAPPED)
            widths[widest] -= cut
            excess -= cut
        return widths

    @staticmethod
    def _parts(cell: str, width: int, wrap: bool) -> list[str]:
        lines = cell.split("\n")
        if not wrap:
            return lines
        out: list[str] = []
        for line in lines:
            if len(line) <= width:
                out.append(line)
                continue
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False))
        return out

    @staticmethod
    def _paint(text: str, cell: str, bold: bool) -> str:
        words = getattr(cell, "style", "").split()
        if not text or not (words or bold):
            return text
        colours = [w for w in words if w not in ("bold", "dim")]
        return typer.style(
            text,
            fg=colours[0] if colours else None,
            bold=bold or "bold" in words or None,
            dim="dim" in words or None,
        )

    @staticmethod
    def _line(shown: Sequence[str], widths: Sequence[int], plain: Sequence[str]) -> str:
        """``shown`` (maybe with colour codes) padded by the lengths of ``plain``, the
        same text without them."""
        padded = [s + " " * (w - len(t)) for s, t, w in zip(shown, plain, widths, strict=True)]
        return _GAP.join(padded).rstrip()
