"""Durable tables on SQLAlchemy Core: SQLite by default, PostgreSQL to scale out.

One module per table group holds that group's tables and queries (``audit``, ``approvals``,
``quotas``; the workflow runtime's ``inbox``, ``runs``, ``effects``, ``cursors``,
``fates`` (the merge map and deletions seen), ``rotation`` (round-robin counters)). A group
module registers its ``define(metadata)`` with ``@table_group`` and is imported here (one
line each), so ``Tables`` and ``create_all`` pick it up. ``core`` holds the ``Store``
(engine, tables, open/create rules, the ``run`` facade for async callers); ``retention``
the counts and batched deletes of ``closeguard store prune``. Depends on
SQLAlchemy, and on ``tools`` for settings and the error tree only. A store that cannot be
opened raises ``StoreError``.
"""

from closeguard.store import approvals as approvals
from closeguard.store import audit as audit
from closeguard.store import budget as budget
from closeguard.store import cursors as cursors
from closeguard.store import effects as effects
from closeguard.store import fates as fates
from closeguard.store import inbox as inbox
from closeguard.store import quotas as quotas
from closeguard.store import reminders as reminders
from closeguard.store import rotation as rotation
from closeguard.store import runs as runs
from closeguard.store import sessions as sessions
from closeguard.store import users as users
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
