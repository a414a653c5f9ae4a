"""offline sync

Revision ID: 0004_offline_sync
Revises: 0003_compute_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_offline_sync"
down_revision = "0003_compute_jobs"


def upgrade() -> None:
    op.create_table(
        "mantik_offline_items",
        sa.Column("job_run_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("local_key", sa.String(length=1024), nullable=False),
        sa.Column("central_id", sa.String(length=64), nullable=True),
        sa.Column("fingerprint", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("job_run_id", "kind", "local_key"),
    )
    op.create_table(
        "mantik_offline_runs",
        sa.Column("job_run_id", sa.String(length=32), nullable=False),
        sa.Column("local_run_id", sa.String(length=32), nullable=False),
        sa.Column("central_run_id", sa.String(length=32), nullable=False),
        sa.Column("metric_rowid", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_run_id", "local_run_id"),
    )
    op.create_table(
        "mantik_offline_sync",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("tracking", sa.String(length=16), nullable=False),
        sa.Column("snapshot_mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("newest_point_ms", sa.BigInteger(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=1024), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("mantik_offline_sync")
    op.drop_table("mantik_offline_runs")
    op.drop_table("mantik_offline_items")
