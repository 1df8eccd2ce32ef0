"""PostgreSQL only: procrastinate's job tables and functions (the distributed run queue),
an index to find a run's job, and jobs for the runs of a store that used the embedded
queue until now.

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
ADOPT = (
    "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status) "
    "SELECT r.workflow, 'closeguard.run', r.lead_id, jsonb_build_object('run_id', r.id), "
    "(CASE r.status WHEN 'queued' THEN 'todo' WHEN 'running' THEN 'doing' ELSE 'failed' END)"
    "::procrastinate_job_status FROM {runs} AS r "
    "WHERE r.status IN ('queued', 'running', 'waiting_approval', 'failed', 'dead') "
    "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS j WHERE j.args->>'run_id' = r.id) "
    "ORDER BY r.seq"
)
"""A store that ran the embedded queue before: a job for each run that is not over, in
the runs' order (a running one ``doing``, taken back when its lease runs out; a parked,
failed or dead one ``failed``, so resuming or ``runs retry`` puts it back in place)."""


def upgrade(*, metadata: MetaData) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(text(JOBS_HERE)).scalar() is None:
        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))
    op.execute(f"CREATE INDEX IF NOT EXISTS {RUN_INDEX} ON procrastinate_jobs ((args->>'run_id'))")
    runs = bind.dialect.identifier_preparer.format_table(metadata.tables[_runs(metadata)])
    bind.execute(text(ADOPT.format(runs=runs)))


def _runs(metadata: MetaData) -> str:
    return f"{metadata.schema}.runs" if metadata.schema else "runs"


def downgrade(*, metadata: MetaData) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {RUN_INDEX}")
