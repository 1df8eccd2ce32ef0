"""langgraph.json's factory builds the agent; the docs' drawing of the graph is current."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from closeguard.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _factory() -> object:
    spec_text = json.loads((ROOT / "langgraph.json").read_text())["graphs"]["closeguard"]
    file, _, attr = spec_text.partition(":")
    spec = importlib.util.spec_from_file_location("studio_graph", ROOT / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


async def test_langgraph_json_factory_builds_a_working_agent(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSEGUARD_MODEL", raising=False)
    make_graph = _factory()
    graph = make_graph({"configurable": {}})  # type: ignore[operator]
    assert {"model", "review", "ask", "tools"} <= set(graph.get_graph().nodes)
    result = await graph.ainvoke({"messages": [("user", "Which leads do I have?")]})
    assert "Your first three leads are" in result["messages"][-1].content
    assert "<no " not in result["messages"][-1].content


def test_docs_show_the_current_graph(store: Store) -> None:
    make_graph = _factory()
    drawn = make_graph().get_graph().draw_mermaid().strip()  # type: ignore[operator]
    docs = (ROOT / "docs" / "agent.md").read_text()
    [shown] = re.findall(r"```mermaid\n(.*?)```", docs, flags=re.S)
    assert shown.strip() == drawn, "update the mermaid block in docs/agent.md"
