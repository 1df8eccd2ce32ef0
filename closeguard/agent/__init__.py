"""The chat agent (not built yet).

Will hold the LangGraph state machine over the catalog's tools, model resolution from
``CLOSEGUARD_MODEL`` (``provider:model``), scripted offline models for tests and demos, and
approval interrupts that ask a human before a risky call. Depends on ``tools`` and
``guardrails``.
"""
