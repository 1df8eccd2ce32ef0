"""Baseline: every table group's tables, as ``create_all`` made them before versions.

Creates only what is missing, so a store made by ``create_all`` is adopted as is.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import MetaData

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(*, metadata: MetaData) -> None:
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade(*, metadata: MetaData) -> None:
    metadata.drop_all(op.get_bind())
