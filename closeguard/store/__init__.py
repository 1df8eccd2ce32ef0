"""Durable tables on SQLAlchemy Core: SQLite by default, PostgreSQL to scale out.

One module per table group holds that group's tables and queries (``audit``, ``approvals``,
``quotas``; the workflow runtime's ``inbox``, ``runs``, ``effects``, ``cursors``,
``fates`` (the merge map and deletions seen), ``rotation`` (round-robin counters)). A group
module registers its ``define(metadata)`` with ``@table_group`` and is named in
``core.GROUPS`` (one line each), so ``Tables`` and ``create_all`` pick it up. ``core``
holds the ``Store`` (engine, tables, open/create rules, the ``run`` facade for async
callers); ``retention`` the counts and batched deletes of ``closeguard store prune``;
``records`` and ``reader`` what the command line reads without SQLAlchemy (a plain SQLite
file at the newest schema).
Depends on SQLAlchemy, and on ``tools`` for settings and the error tree only. A store that
cannot be opened raises ``StoreError``.

Exports load on first use, so importing a light module of the package (``records``,
``reader``, ``migrations.head``) does not import SQLAlchemy (~120 ms of a command's start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from closeguard.store.core import (
        Store,
        TableGroup,
        Tables,
        default_store,
        display_url,
        normalize_url,
        store_problem,
        table_group,
    )

__all__ = [
    "Store",
    "TableGroup",
    "Tables",
    "default_store",
    "display_url",
    "normalize_url",
    "store_problem",
    "table_group",
]


def __getattr__(name: str) -> Any:
    """An export of ``core``, imported on first use (``tools._lazy`` does this for the
    other packages; the store may import only ``tools``' settings and errors)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.core"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
