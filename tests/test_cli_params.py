"""``cli._params`` converts plain option values as typer's pydantic layer does, without
pydantic: the same values and the same messages for every input below (issue 23)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param, resolve_type_descriptor
from typer.models import OptionInfo

from closeguard.cli._params import plain

INPUTS: dict[Any, list[Any]] = {
    int: ["12", " 7 ", "-3", "+4", "0", "1.0", "1_000", "1.5", "1e3", "abc", "", " ", "0x10", 20],
    bool: ["TRUE", "Yes", "off", "F", "", " on ", "2", "maybe", True, False, 1, 0, 2],
    str: ["lead", "", " x ", "é"],
    Path: ["a/b.txt", "", "."],
    list[str]: [["a", "b"], ("x",), [], "one"],
    list[Path]: [["a", "b/c"], ("x",), []],
    list[int]: [["1", " 2 "], ["1", "x"], ("3",)],
}
BOUNDS = [(None, None), (1, None), (0, 65535)]


def outcome(runtime: Any, param: typer.core.TyperOption, value: Any) -> tuple[str, Any]:
    try:
        return "value", runtime.coerce(value, param=param, ctx=None)
    except BadParameter as exc:
        return "error", exc.message


def option(annotation: Any, info: OptionInfo) -> typer.core.TyperOption:
    descriptor = resolve_type_descriptor(annotation, info)
    return typer.core.TyperOption(param_decls=["--x"], type_descriptor=descriptor)


@pytest.mark.parametrize("annotation", list(INPUTS), ids=str)
def test_plain_values_convert_as_typer_converts_them(annotation: Any) -> None:
    for low, high in BOUNDS if annotation in (int, list[int]) else [(None, None)]:
        info = OptionInfo(min=low, max=high)
        param = option(annotation, info)
        plain(param)
        assert type(param._runtime_param).__name__ == "_Plain"
        typers = build_runtime_param(resolve_type_descriptor(annotation, info))
        for value in INPUTS[annotation]:
            mine = outcome(param._runtime_param, param, value)
            assert mine == outcome(typers, param, value), (annotation, low, high, value)


def test_other_types_are_left_to_typer() -> None:
    for annotation, info in [(float, OptionInfo()), (list[float], OptionInfo())]:
        param = option(annotation, info)
        plain(param)
        assert param._runtime_param is None
