"""The outcomes table's covariate: a unit's pre-period value sent with its feedback.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Nullable: outcomes stored before it, and feedback sent without one, have none; the
read-out adjusts a metric by it (CUPED, ``workbench.cuped``) only where every outcome
has one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outcomes", sa.Column("covariate", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outcomes") as batch:  # SQLite rebuilds the table to drop it
        batch.drop_column("covariate")
