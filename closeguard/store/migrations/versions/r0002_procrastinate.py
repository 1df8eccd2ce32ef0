"""PostgreSQL only: procrastinate's job tables and functions (the distributed run queue),
and an index to find a run's job.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy import MetaData, text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RUN_INDEX = "closeguard_jobs_run_id"
JOBS_HERE = "SELECT to_regclass(format('%I.procrastinate_jobs', current_schema()))"
"""procrastinate's table in this store's own schema (not one found further down the
search path: a store in a schema of its own gets its own jobs)."""


def upgrade(*, metadata: MetaData) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(text(JOBS_HERE)).scalar() is None:
        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))
    op.execute(f"CREATE INDEX IF NOT EXISTS {RUN_INDEX} ON procrastinate_jobs ((args->>'run_id'))")


def downgrade(*, metadata: MetaData) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {RUN_INDEX}")
