"""The aggregates table: the statistics of pruned events, per experiment.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

``workbench events prune`` folds events older than ``upto`` into one row per experiment,
which every read-out adds to the live events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregates",
        sa.Column("experiment", sa.String(128), primary_key=True),
        sa.Column("upto", sa.Float, nullable=False),
        sa.Column("stats", sa.JSON, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("aggregates")
