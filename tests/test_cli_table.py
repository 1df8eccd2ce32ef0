"""``cli/_table.py``: the listings' plain tables (aligned, wrapped only on a terminal)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from closeguard.cli._table import Table, styled


def sample() -> Table:
    table = Table(title="Things (2)")
    table.add_column("id", wrap=False)
    table.add_column("state")
    table.add_column("note")
    table.add_row("t_1", styled("ok", "green"), "short")
    table.add_row("t_22", styled("broken", "bold red"), "a much longer note\nwith a second line")
    return table


def test_columns_are_aligned_under_a_title_and_header() -> None:
    assert sample().lines() == [
        "Things (2)",
        "id    state   note",
        "----  ------  ------------------",
        "t_1   ok      short",
        "t_22  broken  a much longer note",
        "              with a second line",
    ]


def test_only_wrappable_columns_are_wrapped_to_the_width() -> None:
    table = Table()
    table.add_column("id", wrap=False)
    table.add_column("note")
    table.add_row("a-very-long-identifier", "one two three four five six seven eight nine ten")
    lines = table.lines(width=40)
    assert all(len(line) <= 40 for line in lines), lines
    assert lines[2].startswith("a-very-long-identifier  one two")
    assert " ".join(line[24:].strip() for line in lines[2:]) == (
        "one two three four five six seven eight nine ten"
    )


def test_a_cells_indentation_is_kept_and_a_wrapped_line_keeps_it_too() -> None:
    """``audit show`` and ``approvals show`` put indented JSON in a cell."""
    table = Table(show_header=False)
    table.add_column("field", wrap=False)
    table.add_column("value")
    table.add_row("args", '{\n  "body": {\n    "note": "a b c d e f g h i j k l m n"\n  }\n}')
    assert [line[6:] for line in table.lines()] == [
        "{",
        '  "body": {',
        '    "note": "a b c d e f g h i j k l m n"',
        "  }",
        "}",
    ]
    wrapped = [line[6:] for line in table.lines(width=6 + 24)]
    assert wrapped[2:4] == ['    "note": "a b c d e f', '    g h i j k l m n"']


def test_a_table_that_cannot_fit_keeps_its_cells_whole() -> None:
    table = Table()
    table.add_column("name", wrap=False)
    table.add_row("x" * 50)
    assert table.lines(width=20)[-1] == "x" * 50


def test_colours_show_on_a_terminal_only() -> None:
    app = typer.Typer()

    @app.command()
    def show() -> None:
        sample().print()

    plain = CliRunner().invoke(app, []).stdout
    coloured = CliRunner().invoke(app, [], color=True).stdout
    assert "\x1b[" not in plain and "broken" in plain
    assert "\x1b[32mok\x1b[0m" in coloured and "\x1b[31m\x1b[1mbroken\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_control_characters_in_a_cell_are_shown_not_obeyed() -> None:
    """A value from Close could carry terminal codes (a lead named with an escape)."""
    table = Table("name", "state")
    table.add_row("Acme\x1b[2J\rInc\tLtd", styled("ok\x07", "green"))
    plain = table.lines()
    assert plain[-1] == "Acme\\x1b[2J\\x0dInc\\x09Ltd  ok\\x07"
    coloured = table.lines(color=True)[-1]
    assert "\x1b[2J" not in coloured and "\x07" not in coloured and "\x1b[32m" in coloured


def test_a_row_must_fill_every_column() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        sample().add_row("a", "b")
