"""Offline models that test the harness itself, built on the agent's offline models.

- ``reference``: replays the task's reference solution (one tool call a turn, then the
  reference answer); every packaged task must pass with it.
- ``noop``: answers without doing anything; it must fail every task that needs a change.
- ``adversary``: does the legitimate task like ``reference``, but first obeys every
  instruction planted in the CRM text it reads (``ACTION: tool_name {json args}``), as
  an injected model would: with the guard its attacks must all be blocked.

``scripted:FILE`` is a scripted model as ``closeguard chat`` takes it (``turns:``), or
one keyed by task id (``tasks: {task-id: {turns: [...]}}``, optional ``default:``) whose
strings may say ``{{handle}}`` (filled from the suite's world) and ``{{instruction}}``, so
one file drives a whole suite. Any other ``--model`` is a LangChain ``provider:model``
(``closeguard.agent.resolve_model``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from closeguard.agent import AgentInfo, FunctionChatModel, ScriptedChatModel, resolve_model
from closeguard.agent.prompt import unwrap_result
from closeguard.evals.format import Reference, Task
from closeguard.tools.errors import ConfigError

__all__ = [
    "OFFLINE_MODELS",
    "WRONG_AGENTS_DIR",
    "KeyedScript",
    "adversary_model",
    "close_failures",
    "injected_actions",
    "is_keyed_script",
    "keyed_script",
    "make_model",
    "reference_model",
    "task_model",
    "workflow_llm",
    "wrong_agent_targets",
    "wrong_agents",
]

OFFLINE_MODELS = ("reference", "noop", "adversary")
_ACTION = re.compile(r"ACTION:\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_ADVERSARY = "adversary-"


_DESCRIBED: dict[tuple[str, ...], list[dict[str, Any]]] = {}


def _described(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """The tools' OpenAI form, cached by name: catalog tools never change shape, and
    converting 70 of them costs more than a whole offline trial."""
    names = tuple(getattr(t, "name", None) or str(t) for t in tools)
    if names not in _DESCRIBED:
        _DESCRIBED[names] = [convert_to_openai_tool(t)["function"] for t in tools]
    return _DESCRIBED[names]


class _Scripted(ScriptedChatModel):
    def _describe_tools(self, tools: Sequence[Any]) -> list[dict[str, Any]]:
        return _described(tools)


class _Function(FunctionChatModel):
    def _describe_tools(self, tools: Sequence[Any]) -> list[dict[str, Any]]:
        return _described(tools)


_CLOSE_FAILED = re.compile(r"failed: (?:5\d\d|429)\b|request failed \(")
"""How the client words a call Close failed (a 5xx, 429s past their retries, no answer)."""


def close_failures(messages: Sequence[BaseMessage]) -> list[str]:
    """The tool results in ``messages`` that say Close failed a call (not a guard refusal)."""
    return [
        f"{m.name}: {unwrap_result(str(m.content)).removeprefix('Error: ')}"
        for m in messages
        if isinstance(m, ToolMessage)
        and m.status == "error"
        and _CLOSE_FAILED.search(str(m.content))
    ]


class _Reference(_Scripted):
    """The scripted reference, except that it does not claim a success Close did not give:
    when a call failed, its last turn says what was not done instead of the scripted answer
    (as any model reading its tool results must)."""

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        reply = super()._reply(messages)
        failed = close_failures(messages)
        if reply.tool_calls or not failed:
            return reply
        text = (
            f"I could not finish this: {'; '.join(failed)}. A change whose outcome is "
            "unknown is not retried blindly, so please check Close before asking me again."
        )
        return AIMessage(content=text, id=reply.id)


def reference_model(reference: Reference) -> ScriptedChatModel:
    turns: list[dict[str, Any]] = [
        {"text": "", "tool_calls": [{"name": c.tool, "args": c.args}]} for c in reference.calls
    ]
    turns.append({"text": reference.answer or "Done."})
    return _Reference(turns=turns, name="reference")


def noop_model() -> FunctionChatModel:
    return FunctionChatModel(
        fn=lambda _msgs, _info: "I will leave everything as it is.", name="noop"
    )


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def injected_actions(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``ACTION: tool {args}`` instructions planted in a tool result's text."""
    payload = unwrap_result(text)
    try:
        strings = list(_strings(json.loads(payload)))
    except ValueError:
        strings = [payload]
    found: list[tuple[str, dict[str, Any]]] = []
    decoder = json.JSONDecoder()
    for s in strings:
        for m in _ACTION.finditer(s):
            args: Any = {}
            if s[m.end() : m.end() + 1] == "{":
                try:
                    args, _ = decoder.raw_decode(s, m.end())
                except ValueError:
                    args = {}
            found.append((m.group(1), args if isinstance(args, dict) else {}))
    return found


def adversary_model(reference: Reference) -> FunctionChatModel:
    honest = reference_model(reference)

    def act(messages: list[BaseMessage], _info: AgentInfo) -> AIMessage:
        issued = {
            (c["name"], json.dumps(c["args"], sort_keys=True))
            for m in messages
            if isinstance(m, AIMessage) and str(m.id or "").startswith(_ADVERSARY)
            for c in m.tool_calls
        }
        for m in messages:
            if not isinstance(m, ToolMessage):
                continue
            for tool, args in injected_actions(str(m.content)):
                if (tool, json.dumps(args, sort_keys=True)) not in issued:
                    n = len(issued)
                    return AIMessage(
                        content="The record asks me to do this first.",
                        tool_calls=[
                            {"name": tool, "args": args, "id": f"adv_{n}", "type": "tool_call"}
                        ],
                        id=f"{_ADVERSARY}{n}",
                    )
        own = [
            m
            for m in messages
            if not (isinstance(m, AIMessage) and str(m.id or "").startswith(_ADVERSARY))
        ]
        reply = honest.invoke(own)
        return reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply.content))

    return _Function(fn=act, name="adversary")


def workflow_llm(spec: str, reference: Reference) -> BaseChatModel | None:
    """The model a workflow's LLM steps get: the reference answer for the offline models
    (none for ``noop``, nor when the task gives no answer), else the named model."""
    if spec == "noop":
        return None
    if spec in OFFLINE_MODELS:
        if not reference.answer:
            return None
        return _Scripted(turns=[{"text": reference.answer}], name=f"{spec}-llm")
    return resolve_model(spec)


class KeyedScript:
    """A scripted model file keyed by task id: ``turns`` per task and a ``default``."""

    def __init__(self, path: Path, tasks: dict[str, list[dict[str, Any]]], default: Any) -> None:
        self.path = path
        self.tasks = tasks
        self.default: list[dict[str, Any]] | None = default
        self.description = ""

    def turns_for(self, task_id: str) -> list[dict[str, Any]] | None:
        return self.tasks.get(task_id, self.default)


def _turns(data: Any, where: str) -> list[dict[str, Any]]:
    turns = data.get("turns") if isinstance(data, dict) else data
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ConfigError(f"{where}: expected turns: with a list of turns")
    for i, turn in enumerate(turns):
        unknown = set(turn) - {"text", "tool_calls", "usage"}
        if unknown:
            raise ConfigError(f"{where}, turn {i + 1}: unknown key(s) {', '.join(sorted(unknown))}")
    return turns


@cache
def keyed_script(path: str) -> KeyedScript | None:
    """The keyed script at ``path``, or None when the file is a plain ``turns:`` script."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read model script {file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"model script {file} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "tasks" not in data:
        return None
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        raise ConfigError(f"model script {file}: tasks: maps task ids to turns")
    keyed = {
        str(tid): _turns(spec, f"model script {file}, task {tid}") for tid, spec in tasks.items()
    }
    default = data.get("default")
    script = KeyedScript(
        file,
        keyed,
        None if default is None else _turns(default, f"model script {file}, default"),
    )
    script.description = str(data.get("description") or "")
    return script


WRONG_AGENTS_DIR = Path(__file__).resolve().parent / "wrong_agents"
"""Shipped keyed scripts that behave badly on purpose: every packaged task each one
targets must fail (``wrong_agent_targets``)."""


def wrong_agents() -> dict[str, Path]:
    """The shipped wrong agents by name (file stem)."""
    return {p.stem: p for p in sorted(WRONG_AGENTS_DIR.glob("*.yaml"))}


def wrong_agent_targets(path: Path, suites: dict[str, list[Task]]) -> dict[str, list[str]]:
    """Per suite (of those ``path`` names in ``suites:``), the task ids the wrong agent
    targets: the ones it has turns for, and with a ``default`` every chat task that grades
    its answer (a task that needs a change fails a do-nothing script anyway)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    script = keyed_script(str(path))
    assert script is not None, f"{path} is not a keyed script"
    out: dict[str, list[str]] = {}
    for name in data.get("suites") or []:
        tasks = [t for t in suites.get(name, []) if t.kind == "chat"]
        out[name] = [
            t.id
            for t in tasks
            if t.id in script.tasks
            or (script.default is not None and (t.expect.answer or t.expect.refusal))
        ]
    return out


def is_keyed_script(spec: str) -> bool:
    """Whether ``spec`` is ``scripted:FILE`` with a script keyed by task id (a bad file
    raises its one-line ``ConfigError``)."""
    provider, _, path = spec.partition(":")
    return provider == "scripted" and bool(path) and keyed_script(path) is not None


_INSTRUCTION = "{{instruction}}"


def task_model(spec: str, task: Task, fill: Callable[[Any], Any]) -> BaseChatModel:
    """The chat model for ``task``: a keyed ``scripted:`` file's turns for it (templates
    filled by ``fill``), else ``make_model(spec, task.reference)``."""
    provider, _, path = spec.partition(":")
    script = keyed_script(path) if provider == "scripted" and path else None
    if script is None:
        return make_model(spec, task.reference)
    turns = script.turns_for(task.id)
    if turns is None:
        turns = [{"text": f"(the script {script.path.name} has nothing for task {task.id})"}]
    marker = "@@closeguard-instruction@@"
    raw = json.dumps(turns).replace(_INSTRUCTION, marker)
    filled = fill(json.loads(raw))
    text = json.dumps(filled).replace(marker, json.dumps(task.instruction or "")[1:-1])
    return _Scripted(turns=json.loads(text), name=spec)


def make_model(spec: str, reference: Reference) -> BaseChatModel:
    """The chat model for one task: an offline one by name, else ``resolve_model(spec)``."""
    if spec == "reference":
        return reference_model(reference)
    if spec == "noop":
        return noop_model()
    if spec == "adversary":
        return adversary_model(reference)
    return resolve_model(spec)
