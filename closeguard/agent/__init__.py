"""The agent: a LangGraph state machine over the guarded Close tools.

The model proposes tool calls; the ``review`` node checks each with the guard before
anything runs (refusals go back to the model as error messages naming the rule); calls
that need a person stop the graph with one ``interrupt()`` each, answered by interrupt id
or with ``closeguard approvals approve ID``; the ``tools`` node runs only approved calls,
once, through the guarded client, which enforces the policy again. Offline models
(``ScriptedChatModel``, ``FunctionChatModel``) serve tests, demos and evals. Depends on
``tools``, ``guardrails`` and ``store``; see ``docs/agent.md``.

Exports load on first use (module ``__getattr__``): a module that names the agent does
not import LangGraph until it builds one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeguard.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from closeguard.agent.graph import build_agent
    from closeguard.agent.models import (
        SYSTEM_NAME,
        AgentInfo,
        FunctionChatModel,
        ModelError,
        ScriptedChatModel,
        load_script,
        resolve_model,
    )
    from closeguard.agent.prompt import OrgContext, system_prompt, wrap_result
    from closeguard.agent.review import ANSWERS, Answer, AnswerError, parse_answer
    from closeguard.agent.runtime import (
        ThreadInfo,
        checkpoint_path,
        data_dir,
        list_threads,
        new_thread_id,
        open_checkpointer,
        pending_interrupts,
        resume_command,
        thread_config,
    )
    from closeguard.agent.state import AgentState, Limits, Review

_LAZY = {
    "build_agent": "graph",
    "SYSTEM_NAME": "models",
    "AgentInfo": "models",
    "FunctionChatModel": "models",
    "ModelError": "models",
    "ScriptedChatModel": "models",
    "load_script": "models",
    "resolve_model": "models",
    "OrgContext": "prompt",
    "system_prompt": "prompt",
    "wrap_result": "prompt",
    "ANSWERS": "review",
    "Answer": "review",
    "AnswerError": "review",
    "parse_answer": "review",
    "ThreadInfo": "runtime",
    "checkpoint_path": "runtime",
    "data_dir": "runtime",
    "list_threads": "runtime",
    "new_thread_id": "runtime",
    "open_checkpointer": "runtime",
    "pending_interrupts": "runtime",
    "resume_command": "runtime",
    "thread_config": "runtime",
    "AgentState": "state",
    "Limits": "state",
    "Review": "state",
}
"""Export -> the module of this package that defines it, imported on first access."""


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ANSWERS",
    "SYSTEM_NAME",
    "AgentInfo",
    "AgentState",
    "Answer",
    "AnswerError",
    "FunctionChatModel",
    "Limits",
    "ModelError",
    "OrgContext",
    "Review",
    "ScriptedChatModel",
    "ThreadInfo",
    "build_agent",
    "checkpoint_path",
    "data_dir",
    "list_threads",
    "load_script",
    "new_thread_id",
    "open_checkpointer",
    "parse_answer",
    "pending_interrupts",
    "resolve_model",
    "resume_command",
    "system_prompt",
    "thread_config",
    "wrap_result",
]
