"""``approvals.approvers``: the roles that may answer a request, stored with it (a JSON
list; rows made before it read as ``["admin"]``).

Revision ID: 0018b
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import MetaData

revision = "0018b"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "approvals"
COLUMN = "approvers"


def _has_column(metadata: MetaData) -> bool:
    inspector = sa.inspect(op.get_bind())
    columns = inspector.get_columns(TABLE, schema=metadata.schema)
    return any(c["name"] == COLUMN for c in columns)


def upgrade(*, metadata: MetaData) -> None:
    if not _has_column(metadata):
        op.add_column(TABLE, sa.Column(COLUMN, sa.Text()), schema=metadata.schema)


def downgrade(*, metadata: MetaData) -> None:
    if _has_column(metadata):
        with op.batch_alter_table(TABLE, schema=metadata.schema) as batch:
            batch.drop_column(COLUMN)
