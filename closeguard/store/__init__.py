"""Durable tables on SQLAlchemy Core: SQLite by default, PostgreSQL to scale out.

Owns the schema and access for the audit log, approvals and quota counters (and, later,
the workflow inbox, runs and effect journal). Depends on SQLAlchemy, and on ``tools`` for
settings and the error tree only. A store that cannot be opened raises ``StoreError``.
"""

from closeguard.store._store import (
    Store,
    Tables,
    default_store,
    display_url,
    normalize_url,
    store_problem,
)

__all__ = ["Store", "Tables", "default_store", "display_url", "normalize_url", "store_problem"]
