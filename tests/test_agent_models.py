"""Model resolution, the offline models, and the switch refusing real models in tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from closeguard.agent import FunctionChatModel, ScriptedChatModel, resolve_model
from closeguard.agent import models as agent_models
from closeguard.agent.testing import RealModelRefused, call, scripted, turn
from closeguard.tools.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_no_model_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSEGUARD_MODEL", raising=False)
    with pytest.raises(ConfigError, match="set CLOSEGUARD_MODEL or pass --model") as err:
        resolve_model(None)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec", ["gpt-4o", ":x", "openai:"])
def test_a_spec_without_provider_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="is not provider:model"):
        resolve_model(spec)


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_models, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'closeguard\[anthropic\]'"):
        resolve_model("anthropic:claude-sonnet-4-5")


def test_a_missing_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_models, "find_spec", lambda name: object())
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="needs OPENAI_API_KEY"):
        resolve_model("openai:gpt-4o-mini")


def test_the_test_switch_refuses_real_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_models, "find_spec", lambda name: object())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    with pytest.raises(RealModelRefused, match="real chat model was requested"):
        resolve_model("openai:gpt-4o-mini")
    with pytest.raises(RealModelRefused):
        resolve_model("mistralai:mistral-large")


def test_scripted_yaml_from_the_examples() -> None:
    model = resolve_model(f"scripted:{ROOT / 'examples' / 'lookup.yaml'}")
    assert isinstance(model, ScriptedChatModel) and len(model.turns) == 2
    reply = model.invoke([HumanMessage("hi")])
    assert isinstance(reply, AIMessage) and reply.tool_calls[0]["name"] == "lead_list"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("turns: 3", "expected 'turns:'"),
        ("turns: [{txt: hi}]", "unknown key(s) txt"),
        ("turns: [{tool_calls: [{args: {}}]}]", "a tool call needs a name"),
        ("turns: [", "not valid YAML"),
    ],
)
def test_bad_scripts_are_one_line_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="model script") as err:
        resolve_model(f"scripted:{path}")
    assert problem in str(err.value)
    with pytest.raises(ConfigError, match="cannot read model script"):
        resolve_model(f"scripted:{tmp_path / 'missing.yaml'}")


def test_scripted_model_records_what_it_was_sent_and_bound() -> None:
    model = scripted(turn("one", call("lead_list", limit=1)), turn("two"))
    bound = model.bind_tools(
        [
            {
                "type": "function",
                "function": {
                    "name": "lead_list",
                    "description": "d",
                    "parameters": {"type": "object"},
                },
            }
        ]
    )
    first = bound.invoke([HumanMessage("a")])
    second = bound.invoke([HumanMessage("a"), first])
    third = bound.invoke([HumanMessage("a"), first, second])
    assert [first.content, second.content] == ["one", "two"]
    assert "has no turn 3" in str(third.content)
    assert model.log.bound == [["lead_list"]] and len(model.log.sent) == 3
    assert model.log.sent[1][-1] is first


async def test_scripted_model_streams_text_and_tool_calls() -> None:
    model = scripted(
        turn("hello there", call("lead_get", id="x"), usage={"input_tokens": 1, "output_tokens": 2})
    )
    chunks = [c async for c in model.astream([HumanMessage("a")])]
    assert len(chunks) > 2
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.content == "hello there"
    assert merged.tool_calls[0]["args"] == {"id": "x"}
    assert merged.usage_metadata["total_tokens"] == 3


async def test_function_model_sync_and_async() -> None:
    async def afn(messages: list, info: object) -> str:  # type: ignore[type-arg]
        return f"{len(messages)} messages"

    model = FunctionChatModel(fn=afn)
    assert (await model.ainvoke([HumanMessage("a")])).content == "1 messages"
    with pytest.raises(TypeError, match="async"):
        model.invoke([HumanMessage("a")])
    sync = FunctionChatModel(fn=lambda messages, info: AIMessage(content="ok"))
    assert sync.invoke("x").content == "ok"
