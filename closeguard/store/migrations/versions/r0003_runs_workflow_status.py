"""An index on ``runs (workflow, status)``: a worker's claim finds the unfinished runs of
its workflows without reading every finished run (at 30,000 runs a claim took ~85 ms).

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import MetaData

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEX = "ix_runs_workflow_status"


def upgrade(*, metadata: MetaData) -> None:
    runs = op.get_bind().dialect.identifier_preparer.format_table(metadata.tables[_runs(metadata)])
    op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON {runs} (workflow, status)")


def _runs(metadata: MetaData) -> str:
    return f"{metadata.schema}.runs" if metadata.schema else "runs"


def downgrade(*, metadata: MetaData) -> None:
    schema = f"{metadata.schema}." if metadata.schema else ""
    op.execute(f"DROP INDEX IF EXISTS {schema}{INDEX}")
