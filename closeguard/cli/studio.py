"""The graph factory named in ``langgraph.json``, for ``langgraph dev`` and LangGraph Studio.

The LangGraph server brings its own checkpointer, so none is set here. Configuration comes
from the environment: ``CLOSEGUARD_MODEL`` (default: the offline ``examples/lookup.yaml``
script of a source checkout), ``CLOSEGUARD_POLICY`` (default ``sales-rep``), and
``CLOSE_API_KEY`` (without it, the embedded simulator).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig

from closeguard.agent import build_agent, resolve_model
from closeguard.cli.chat import connect
from closeguard.guardrails import Guarded, Policy
from closeguard.store import default_store
from closeguard.tools import Settings

__all__ = ["make_graph"]

EXAMPLE_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "lookup.yaml"


def _model_spec() -> str | None:
    configured = Settings().model
    if configured:
        return configured
    return f"scripted:{EXAMPLE_SCRIPT}" if EXAMPLE_SCRIPT.exists() else None


def make_graph(config: RunnableConfig | None = None) -> Any:
    """The agent, as LangGraph's server loads it (``config`` is the run's, unused here)."""
    policy = Guarded(
        Policy.load(os.environ.get("CLOSEGUARD_POLICY", "sales-rep")), store=default_store()
    )
    connection = connect(policy, actor="langgraph-studio")
    return build_agent(resolve_model(_model_spec()), policy, connection.client)
