"""The predictions table's attributes: the unit's, sent with ``/predict``, for segments.

They are a flat object such as ``{"country": "DE"}``, by which the read-out can break a
binary metric down into segments (``segment_by``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Nullable: predictions logged before it, and requests sent without attributes, have none;
the segment read-out counts them as unattributed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("attributes", sa.JSON(none_as_null=True),
                                           nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:  # SQLite rebuilds the table to drop it
        batch.drop_column("attributes")
