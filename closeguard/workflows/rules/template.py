"""Templated values in rules: Jinja2's sandboxed environment with closeguard's helpers.

A string holding ``{{ ... }}`` or ``{% ... %}`` is a template; any other value is data.
A string that is exactly one ``{{ expression }}`` gives the expression's own value (a
number stays a number, a list a list); anything else renders to text. Values coming from
Close (a lead called ``{{ 7*7 }}``) are only ever data: rendering never evaluates its
output again, and the sandbox refuses attribute tricks (``__class__``) at render time.
Top-level names are checked when the rule loads (a typo is a line-numbered error); a
missing field of a value (``data.user_name`` on an event without one) is empty: it renders
as "" and a single expression gives ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from closeguard.guardrails._yaml import Lines

__all__ = ["ENV", "Template", "compile_value", "money", "names_in", "render"]

_MARK = re.compile(r"\{\{|\{%")
_ONE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


def money(cents: Any, currency: Any = "", period: Any = "") -> str:
    """Close's cents as ``1,234.00 USD`` (``/month`` or ``/year`` for a recurring value)."""
    try:
        amount = float(cents or 0) / 100
    except (TypeError, ValueError):
        return str(cents)
    suffix = {"monthly": "/month", "annual": "/year"}.get(str(period or ""), "")
    return f"{amount:,.2f} {currency or ''}".strip() + suffix


ENV = SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False)
ENV.filters["money"] = money


@dataclass(frozen=True)
class Template:
    """One template string, or a single expression (``expression``) whose own value it gives.

    It is parsed and checked when the rule loads (syntax, filters and tests, the names it
    reads), and compiled to Python on its first render: listing or validating rules costs
    no compilation.
    """

    source: str
    expression: str | None = None
    names: frozenset[str] = frozenset()

    @property
    def native(self) -> bool:
        """A single expression: rendering gives its value, not text."""
        return self.expression is not None

    @cached_property
    def compiled(self) -> Any:
        """The compiled template (an expression's callable when ``native``)."""
        if self.expression is not None:
            return ENV.compile_expression(self.expression)
        return ENV.from_string(self.source)

    def render(self, context: Mapping[str, Any]) -> Any:
        if self.native:
            value = self.compiled(**context)
            return None if isinstance(value, jinja2.Undefined) else value
        return self.compiled.render(**context)


def compile_template(source: str, lines: Lines, path: tuple[str | int, ...]) -> Template:
    """Check ``source`` as compiling it would (a syntax error, an unknown filter or test:
    a ``ConfigError`` at the value's line) and find the names it reads; the compilation
    itself waits for the first render.

    ``find_undeclared_variables`` walks the template with Jinja's code generator, which
    raises every error compiling raises after parsing (``TemplateAssertionError``).
    """
    try:
        names = frozenset(meta.find_undeclared_variables(ENV.parse(source)))
        found = _ONE_EXPRESSION.match(source)
        if found is not None and "{{" not in found["expr"] and "{%" not in found["expr"]:
            expression = found["expr"].strip()
            _parse_expression(expression)
            return Template(source, expression, names)
    except jinja2.TemplateSyntaxError as exc:
        raise lines.error(path, f"template {source!r}: {exc.message}") from None
    return Template(source, None, names)


def _parse_expression(expression: str) -> None:
    """Parse ``expression`` as ``ENV.compile_expression`` does, without compiling it."""
    parser = Parser(ENV, expression, state="variable")
    parser.parse_expression()
    if not parser.stream.eos:
        raise jinja2.TemplateSyntaxError(
            "chunk after expression", parser.stream.current.lineno, None, None
        )


def compile_value(
    raw: Any, lines: Lines, path: tuple[str | int, ...], known: Collection[str] | None = None
) -> Any:
    """``raw`` with every templated string compiled (lists and mappings walked).

    ``known``, when given, are the names a template may use; any other is refused.
    """
    if isinstance(raw, str):
        if not _MARK.search(raw):
            return raw
        template = compile_template(raw, lines, path)
        if known is not None:
            unknown = sorted(template.names - set(known))
            if unknown:
                raise lines.error(
                    path,
                    f"template {raw!r} uses {', '.join(map(repr, unknown))}, which is not "
                    f"defined here; known: {', '.join(sorted(known))}",
                )
        return template
    if isinstance(raw, list):
        return [compile_value(v, lines, (*path, i), known) for i, v in enumerate(raw)]
    if isinstance(raw, dict):
        return {k: compile_value(v, lines, (*path, k), known) for k, v in raw.items()}
    return raw


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with each ``Template`` in it rendered against ``context``."""
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value


def names_in(value: Any) -> frozenset[str]:
    """Every top-level name the templates in ``value`` read."""
    if isinstance(value, Template):
        return value.names
    if isinstance(value, list):
        return frozenset().union(*(names_in(v) for v in value))
    if isinstance(value, dict):
        return frozenset().union(*(names_in(v) for v in value.values()))
    return frozenset()
