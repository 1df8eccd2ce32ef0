"""Chat models: real providers through LangChain's ``init_chat_model``, and offline ones.

``resolve_model("provider:model")`` names its extra (``closeguard[openai]``) or variable
(``OPENAI_API_KEY``) in a one-line ``ConfigError`` when something is missing, and
``scripted:PATH`` loads a YAML script. The offline models follow pydantic-ai's TestModel
and FunctionModel: ``ScriptedChatModel`` replays AI turns, ``FunctionChatModel`` answers
from a function. Both support ``bind_tools``, stream, report token usage when given it,
and record what they were sent.

A scripted turn's strings may say ``${tool_name.path.to.value}``: it is replaced by that
value in the latest result of that tool (``${lead_search.data.0.id}``), so a script works
on any simulated world.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import yaml
from langchain.chat_models import init_chat_model
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from closeguard.agent.prompt import unwrap_result
from closeguard.tools import Settings
from closeguard.tools.errors import CloseguardError, ConfigError

__all__ = [
    "OFFLINE_PROVIDERS",
    "PROVIDERS",
    "AgentInfo",
    "FunctionChatModel",
    "ModelError",
    "ScriptLog",
    "ScriptedChatModel",
    "init_chat_model",
    "load_script",
    "malformed_tool_calls",
    "provider_error",
    "resolve_model",
    "strict_tool_spec",
    "strict_violations",
    "wants_strict_tools",
]

PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "openai": ("langchain_openai", "openai", "OPENAI_API_KEY"),
    "anthropic": ("langchain_anthropic", "anthropic", "ANTHROPIC_API_KEY"),
    "ollama": ("langchain_ollama", "ollama", None),
}
"""provider -> (module, closeguard extra, environment variable with its key)."""
OFFLINE_PROVIDERS = ("scripted",)
HOW_TO_SET = (
    "set CLOSEGUARD_MODEL or pass --model provider:model "
    "(openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, ollama:llama3.1, "
    "or offline scripted:examples/lookup.yaml)"
)
SYSTEM_NAME = "closeguard"
"""``name`` of the AI messages the graph writes itself (limits); scripts do not count them."""


def resolve_model(spec: str | None = None) -> BaseChatModel:
    """The chat model for ``provider:model`` (default ``CLOSEGUARD_MODEL``)."""
    spec = spec or Settings().model
    if not spec:
        raise ConfigError(f"no chat model configured: {HOW_TO_SET}")
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(f"model {spec!r} is not provider:model; {HOW_TO_SET}")
    if provider == "scripted":
        return ScriptedChatModel.from_file(name)
    if provider in PROVIDERS:
        module, extra, key = PROVIDERS[provider]
        if find_spec(module) is None:
            raise ConfigError(
                f"model provider {provider!r} is not installed: pip install 'closeguard[{extra}]'"
            )
        if key and not os.environ.get(key):
            raise ConfigError(
                f"model provider {provider!r} needs {key}: set it in the environment or .env"
            )
    try:
        return init_chat_model(name, model_provider=provider)
    except ImportError as exc:
        raise ConfigError(f"model provider {provider!r} is not installed: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"cannot use model {spec!r}: {str(exc).splitlines()[0]}") from exc


@dataclass
class AgentInfo:
    """What a ``FunctionChatModel``'s function is given besides the messages."""

    tools: list[dict[str, Any]]
    tool_names: list[str]


@dataclass
class ScriptLog:
    """What an offline model was sent (each call's messages) and which tools it was bound."""

    sent: list[list[BaseMessage]] = field(default_factory=list)
    bound: list[list[str]] = field(default_factory=list)
    usage_reported: int = 0


def _tool_dicts(tools: Sequence[Any]) -> list[dict[str, Any]]:
    return [convert_to_openai_tool(t)["function"] for t in tools]


class _OfflineModel(BaseChatModel):
    """Shared plumbing: tool binding, recording, chunked streaming."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    log: ScriptLog = Field(default_factory=ScriptLog, exclude=True)
    tools: list[dict[str, Any]] = Field(default_factory=list)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        described = self._describe_tools(tools)
        self.log.bound.append([t["name"] for t in described])
        return self.model_copy(update={"tools": described})

    def _describe_tools(self, tools: Sequence[Any]) -> list[dict[str, Any]]:
        """The tools' OpenAI function form, as bound; subclasses may cache it."""
        return _tool_dicts(tools)

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        raise NotImplementedError

    async def _areply(self, messages: list[BaseMessage]) -> AIMessage:
        return self._reply(messages)

    def _record(self, messages: list[BaseMessage], reply: AIMessage) -> AIMessage:
        self.log.sent.append(list(messages))
        if reply.usage_metadata:
            self.log.usage_reported += 1
        return reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._record(messages, self._reply(messages))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._record(messages, await self._areply(messages))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._record(messages, self._reply(messages))
        for chunk in _chunks(reply):
            if run_manager is not None and isinstance(chunk.message.content, str):
                run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self._record(messages, await self._areply(messages))
        for chunk in _chunks(reply):
            if run_manager is not None and isinstance(chunk.message.content, str):
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk


def _chunks(reply: AIMessage) -> Iterator[ChatGenerationChunk]:
    """The reply word by word, then its tool calls and usage in one last chunk."""
    text = reply.content if isinstance(reply.content, str) else ""
    for piece in re.findall(r"\S+\s*|\s+", text):
        yield ChatGenerationChunk(message=AIMessageChunk(content=piece, id=reply.id))
    tail = AIMessageChunk(
        content="",
        id=reply.id,
        usage_metadata=reply.usage_metadata,
        tool_call_chunks=[
            {
                "name": c["name"],
                "args": json.dumps(c["args"]),
                "id": c["id"],
                "index": i,
                "type": "tool_call_chunk",
            }
            for i, c in enumerate(reply.tool_calls)
        ],
        chunk_position="last",
    )
    yield ChatGenerationChunk(message=tail)


# -- scripted --------------------------------------------------------------------------

_REF = re.compile(r"\$\{([A-Za-z0-9_]+)((?:\.[^.}]+)*)\}")


def _latest_results(messages: Sequence[BaseMessage], tools: set[str]) -> dict[str, Any]:
    """The latest successful result of each of ``tools`` (parsed only when referenced)."""
    out: dict[str, Any] = {}
    for msg in reversed(messages):
        if len(out) == len(tools):
            break
        if (
            isinstance(msg, ToolMessage)
            and msg.name in tools
            and msg.name not in out
            and msg.status != "error"
        ):
            try:
                out[msg.name] = json.loads(unwrap_result(str(msg.content)))
            except ValueError:
                out[msg.name] = str(msg.content)
    return out


def _references(template: Any) -> set[str]:
    if isinstance(template, str):
        return {m.group(1) for m in _REF.finditer(template)}
    if isinstance(template, dict):
        return set().union(*(_references(v) for v in template.values()))
    if isinstance(template, list):
        return set().union(*(_references(v) for v in template))
    return set()


def _lookup(results: dict[str, Any], tool: str, path: str) -> Any:
    """The referenced value; a missing one reads ``<no tool.path>`` (a refused or rejected
    call has no result, and the script goes on rather than crash the conversation)."""
    missing = f"<no {tool}{path}>"
    if tool not in results:
        return missing
    value = results[tool]
    for key in filter(None, path.split(".")):
        try:
            value = value[int(key)] if isinstance(value, list) else value[key]
        except (KeyError, IndexError, ValueError, TypeError):
            return missing
    return value


def _fill(template: Any, results: dict[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _REF.fullmatch(template)
        if whole:
            return _lookup(results, whole.group(1), whole.group(2))
        return _REF.sub(lambda m: str(_lookup(results, m.group(1), m.group(2))), template)
    if isinstance(template, dict):
        return {k: _fill(v, results) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, results) for v in template]
    return template


def _model_turns(messages: Sequence[BaseMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, AIMessage) and m.name != SYSTEM_NAME)


def load_script(path: str | Path) -> list[dict[str, Any]]:
    """A YAML script: ``turns:``, each ``{text, tool_calls: [{name, args}], usage}``."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read model script {file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"model script {file} is not valid YAML: {exc}") from exc
    turns = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ConfigError(f"model script {file}: expected 'turns:' with a list of turns")
    for i, turn in enumerate(turns):
        unknown = set(turn) - {"text", "tool_calls", "usage"}
        if unknown:
            raise ConfigError(
                f"model script {file}, turn {i + 1}: unknown key(s) {', '.join(sorted(unknown))}"
            )
        for call in turn.get("tool_calls") or []:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ConfigError(f"model script {file}, turn {i + 1}: a tool call needs a name")
    return turns


class ScriptedChatModel(_OfflineModel):
    """Replays scripted AI turns; the next turn is the number of AI turns in the input.

    Counting turns from the conversation (not a counter in the model) makes a thread that
    resumes in a new process pick up the script where it stopped.
    """

    turns: list[dict[str, Any]]

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedChatModel:
        return cls(turns=load_script(path), name=f"scripted:{path}")

    @property
    def _llm_type(self) -> str:
        return "closeguard-scripted"

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        index = _model_turns(messages)
        if index >= len(self.turns):
            return AIMessage(
                content=f"(the script has no turn {index + 1}: it ends after {len(self.turns)})"
            )
        template = self.turns[index]
        wanted = _references(template)
        turn = _fill(template, _latest_results(messages, wanted)) if wanted else template
        calls = [
            {
                "name": c["name"],
                "args": c.get("args") or {},
                "id": f"call_{index}_{j}",
                "type": "tool_call",
            }
            for j, c in enumerate(turn.get("tool_calls") or [])
        ]
        usage = turn.get("usage")
        return AIMessage(
            content=str(turn.get("text") or ""),
            tool_calls=calls,
            id=f"scripted-{index}",
            usage_metadata=_usage(usage) if usage else None,
        )


def _usage(raw: dict[str, Any]) -> Any:
    inp, out = int(raw.get("input_tokens", 0)), int(raw.get("output_tokens", 0))
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": int(raw.get("total_tokens", inp + out)),
    }


Reply = AIMessage | str


class FunctionChatModel(_OfflineModel):
    """Answers with ``fn(messages, info)`` (sync or async): an ``AIMessage`` or text."""

    fn: Callable[[list[BaseMessage], AgentInfo], Any]

    @property
    def _llm_type(self) -> str:
        return "closeguard-function"

    def _info(self) -> AgentInfo:
        return AgentInfo(tools=list(self.tools), tool_names=[t["name"] for t in self.tools])

    @staticmethod
    def _as_message(out: Any) -> AIMessage:
        return out if isinstance(out, AIMessage) else AIMessage(content=str(out))

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        if inspect.iscoroutinefunction(self.fn):
            raise TypeError("this FunctionChatModel's function is async: call it with ainvoke")
        return self._as_message(self.fn(list(messages), self._info()))

    async def _areply(self, messages: list[BaseMessage]) -> AIMessage:
        out = self.fn(list(messages), self._info())
        if inspect.isawaitable(out):
            out = await out
        return self._as_message(out)


# -- OpenAI strict function calling -------------------------------------------------------

_STRICT_KEYS = frozenset(
    {
        "type",
        "description",
        "title",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)
"""The JSON Schema keywords OpenAI's strict function calling accepts."""


def wants_strict_tools(model: Any) -> bool:
    """Whether ``model`` is OpenAI's chat model, whose tools closeguard binds strict."""
    return getattr(model, "_llm_type", None) == "openai-chat"


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if k != "default"}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
    if "$defs" in schema:
        out["$defs"] = {k: _strict(v) for k, v in schema["$defs"].items()}
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
        out.setdefault("properties", {})
        out["required"] = list(out["properties"])
    return out


def strict_tool_spec(tool: Any) -> dict[str, Any]:
    """``tool`` in OpenAI's strict function form: every object closed, every property
    required (optional ones already admit null, which the agent reads as "not given"),
    no ``default``. A free-form object (custom fields) becomes an empty closed object."""
    spec = convert_to_openai_tool(tool, strict=True)
    function = dict(spec["function"])
    function["parameters"] = _strict(function.get("parameters") or {"type": "object"})
    function["strict"] = True
    return {"type": "function", "function": function}


def strict_violations(schema: Any, path: str = "parameters") -> list[str]:
    """Where ``schema`` breaks OpenAI's strict rules (empty: it would be accepted)."""
    if isinstance(schema, list):
        return [v for i, s in enumerate(schema) for v in strict_violations(s, f"{path}.{i}")]
    if not isinstance(schema, dict):
        return []
    out = [f"{path}: {k!r} is not supported" for k in schema if k not in _STRICT_KEYS]
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            out.append(f"{path}: additionalProperties must be false")
        props = schema.get("properties") or {}
        missing = sorted(set(props) - set(schema.get("required") or []))
        if missing:
            out.append(f"{path}: every property must be required ({', '.join(missing)})")
        for name, sub in props.items():
            out.extend(strict_violations(sub, f"{path}.{name}"))
    for key in ("items", "anyOf"):
        if key in schema:
            out.extend(strict_violations(schema[key], f"{path}.{key}"))
    for name, sub in (schema.get("$defs") or {}).items():
        out.extend(strict_violations(sub, f"{path}.$defs.{name}"))
    return out


# -- provider failures --------------------------------------------------------------------

_PROVIDER_MODULES = (
    "openai",
    "anthropic",
    "ollama",
    "httpx",
    "langchain_openai",
    "langchain_anthropic",
    "langchain_ollama",
)


class ModelError(CloseguardError):
    """The chat model failed: a provider error (429, 5xx, no answer) or a malformed reply.
    Its message is one line for the person at the terminal or in a report."""


def provider_error(exc: BaseException) -> str | None:
    """One line for an error a model provider's client raised, or None for any other."""
    module = type(exc).__module__.split(".")[0]
    if module not in _PROVIDER_MODULES:
        return None
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = ""
    if isinstance(body, dict):
        inner = body.get("error")
        source: dict[str, Any] = inner if isinstance(inner, dict) else body
        message = str(source.get("message") or "")
    lines = (message or str(exc)).strip().splitlines()
    message = lines[0] if lines else ""
    what = f"answered {status}" if status else f"failed ({type(exc).__name__})"
    provider = module.removeprefix("langchain_")
    return f"the model provider ({provider}) {what}: {message}".rstrip(": ")


def malformed_tool_calls(reply: Any) -> str | None:
    """One line naming the tool calls of ``reply`` whose arguments could not be read."""
    bad = getattr(reply, "invalid_tool_calls", None) or []
    if not bad:
        return None
    names = ", ".join(f"{c.get('name') or '?'} ({_why(c.get('error'))})" for c in bad)
    return f"the model sent a malformed tool call: {names}"


def _why(error: Any) -> str:
    text = " ".join(str(error or "").split())
    if "not valid JSON" in text:
        return "its arguments are not valid JSON"
    text = text.split(" For troubleshooting")[0]
    return (text[:157] + "...") if len(text) > 160 else (text or "unreadable")
