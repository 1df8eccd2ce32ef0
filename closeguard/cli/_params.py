"""Plain option values without pydantic (issue 23).

Typer 0.29 converts every parameter value it is given through a pydantic ``TypeAdapter``:
the first such value imports pydantic (and its plugin loader, ``importlib.metadata``) and
each parameter builds a validator, 30-40 ms of a light command's start (``--limit 20``'s
default counts, and so does every ``--help`` option). ``plain`` gives ``str``, ``bool``,
``int`` (with ``min``/``max``) and ``Path`` parameters, and lists of them, the same
conversion with the same messages, without pydantic; other parameters, and typer versions
without this layer, are left to typer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

try:
    from typer._click.exceptions import BadParameter
    from typer._coercion import RuntimeParam
    from typer._param_types import coerce_cli_path
except ImportError:  # a typer without pydantic coercion: nothing to replace
    RuntimeParam = None  # type: ignore[assignment,misc]

__all__ = ["plain"]

_INT = re.compile(r"\s*[+-]?\d+(?:_\d+)*(?:\.0*)?\s*")
"""What pydantic's lax mode reads as an int from a string (``"1.0"``, ``"1_000"`` too)."""


def _int(value: int | str, minimum: float | None, maximum: float | None) -> int:
    if isinstance(value, str):
        if not _INT.fullmatch(value):
            raise ValueError(
                "Input should be a valid integer, unable to parse string as an integer"
            )
        value = int(value.strip().split(".")[0])
    if minimum is not None and value < minimum:
        raise ValueError(f"Input should be greater than or equal to {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"Input should be less than or equal to {maximum}")
    return value


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE or not text:
            return False
    elif value in (0, 1):
        return bool(value)
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return str(value)


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _Plain(RuntimeParam):
        """Typer's conversion of a ``str``, ``bool``, ``int`` or ``Path`` value (or a list
        of one of them), without pydantic."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation: Any = self.annotation
            if get_origin(annotation) is list:
                item = get_args(annotation)[0]
                values = value if isinstance(value, list | tuple) else [value]
                return [self._one(item, v, param, ctx) for v in values]
            return self._one(annotation, value, param, ctx)

        def _one(self, annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
            info = self.parameter_info
            if annotation is str:
                return _str(value)
            try:
                if annotation is bool:
                    return _bool(value)
                if annotation is int:
                    return _int(value, info.min, info.max)
            except ValueError as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from None
            path = value if isinstance(value, Path) else Path(_str(value))
            return coerce_cli_path(path, info, path_type=Path, param=param, ctx=ctx)


def _is_plain(descriptor: Any) -> bool:
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None:
        return False
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if annotation is str:
        return not descriptor.is_path
    if annotation is int:
        return not info.clamp
    if annotation is bool:
        return True
    return annotation is Path and info.path_type in (None, Path)


def plain(param: Any) -> None:
    """Give ``param`` (a typer option or argument) the pydantic-free conversion when its
    type is a plain one; leave it to typer otherwise."""
    if RuntimeParam is None or getattr(param, "_runtime_param", False) is not None:
        return
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and _is_plain(descriptor):
        param._runtime_param = _Plain(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
        )
