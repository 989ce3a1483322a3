"""The event store's tables as an earlier workbench created them, before migrations.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

predictions, outcomes, experiments, experiment_state, audit and api_keys, with their
indexes, exactly as an earlier workbench created them: such a store is stamped with this
revision by ``workbench db upgrade`` (its tables match), then upgraded from here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("experiment", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(128), nullable=False),
        sa.Column("model_tag", sa.String(256), nullable=False),
        sa.Column("unit", sa.String(256)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fallback_from", sa.String(128)),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON),
        sa.Column("instances", sa.JSON),
    )
    op.create_index("ix_predictions_parent_id", "predictions", ["parent_id"])
    op.create_index("ix_predictions_ts", "predictions", ["ts"])
    op.create_index("ix_predictions_experiment", "predictions", ["experiment"])

    op.create_table(
        "outcomes",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("experiment", sa.String(128), nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
    )
    op.create_index("ix_outcomes_experiment", "outcomes", ["experiment"])

    op.create_table(
        "experiments",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )

    op.create_table(
        "experiment_state",
        sa.Column("experiment", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("weights", sa.JSON, nullable=False),
        sa.Column("winner", sa.String(128)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_audit_experiment", "audit", ["experiment"])

    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("rate_limit", sa.String(128)),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revoked", sa.Float),
    )


def downgrade() -> None:
    for table in ("api_keys", "audit", "experiment_state", "experiments", "outcomes",
                  "predictions"):
        op.drop_table(table)  # drops its indexes with it
