"""Helpers for tests, demos and evals: script turns in Python, answer interrupts, and the
switch that makes any attempt to build a real (networked) chat model fail.

::

    model = scripted(turn("Looking it up.", call("lead_search", query="Acme")),
                     turn("Acme has 3 contacts."))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from langgraph.types import Interrupt

from closeguard.agent import models
from closeguard.agent.models import ScriptedChatModel

__all__ = ["RealModelRefused", "answer_all", "call", "refuse_real_models", "scripted", "turn"]


class RealModelRefused(RuntimeError):
    """Raised instead of building a real chat model while ``refuse_real_models`` is on."""


def call(name: str, **args: Any) -> dict[str, Any]:
    """One scripted tool call."""
    return {"name": name, "args": args}


def turn(
    text: str = "", *calls: dict[str, Any], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """One scripted AI turn: text, tool calls and, optionally, token usage to report."""
    out: dict[str, Any] = {"text": text, "tool_calls": list(calls)}
    if usage:
        out["usage"] = usage
    return out


def scripted(*turns: dict[str, Any]) -> ScriptedChatModel:
    return ScriptedChatModel(turns=list(turns))


def answer_all(interrupts: Iterable[Interrupt], answer: Any) -> dict[str, Any]:
    """The same answer for every pending interrupt, keyed by interrupt id."""
    return {i.id: answer for i in interrupts}


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise RealModelRefused(
        "a real chat model was requested during tests; use ScriptedChatModel or "
        "FunctionChatModel (closeguard.agent.testing)"
    )


@contextmanager
def refuse_real_models() -> Iterator[None]:
    """While active, ``resolve_model`` for any real provider raises ``RealModelRefused``."""
    with mock.patch.object(models, "init_chat_model", _refuse):
        yield
