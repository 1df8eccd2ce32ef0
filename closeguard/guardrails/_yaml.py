"""YAML to plain Python values, remembering the line of every key and item.

``load_yaml(text, file)`` returns ``(data, lines)`` where ``lines[path]`` is the 1-based
line of the key (for mapping entries) or of the item (for list entries) at ``path``, a
tuple of keys and indexes. Syntax errors and duplicate keys become ``ConfigError``.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from closeguard.tools.errors import ConfigError

Path_ = tuple[str | int, ...]

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML has it (about 5x the pure-Python one): listing the
workflows parses some 25 policy and rule documents (issue 23)."""

__all__ = ["Lines", "load_yaml", "shown"]


class Lines:
    """Line numbers by path, with a fallback to the nearest enclosing path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._lines: dict[Path_, int] = {(): 1}

    def set(self, path: Path_, line: int) -> None:
        self._lines[path] = line

    def line(self, path: Path_) -> int:
        while path not in self._lines:
            path = path[:-1]
        return self._lines[path]

    def error(self, path: Path_, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line(path))


def shown(value: Any) -> str:
    """A value as an error message shows it: an empty YAML value is "empty", not ``None``."""
    return "empty" if value is None else repr(value)


def _convert(node: yaml.Node, path: Path_, lines: Lines) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = _scalar(key_node, lines.file)
            if isinstance(key, bool) and isinstance(key_node, yaml.ScalarNode):
                key = key_node.value  # a key written on/yes/true is that word, not YAML 1.1's bool
            key = key if isinstance(key, str) else str(key)
            if key in out:
                raise ConfigError(f"duplicate key {key!r}", file=lines.file, line=line)
            lines.set((*path, key), line)
            out[key] = _convert(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines.set((*path, i), item.start_mark.line + 1)
            items.append(_convert(item, (*path, i), lines))
        return items
    return _scalar(node, lines.file)


def _scalar(node: yaml.Node, file: str) -> Any:
    """A scalar's value as ``yaml.safe_load`` gives it; an empty value is ``None``."""
    try:
        return SafeConstructor().construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from exc


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    return ConfigError(f"YAML syntax: {exc.problem or exc}", file=file, line=line)


def load_yaml(text: str, file: str) -> tuple[Any, Lines]:
    lines = Lines(file)
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML: {exc}", file=file) from exc
    if root is None:
        return None, lines
    return _convert(root, (), lines), lines
