"""compute jobs

Revision ID: 0003_compute_jobs
Revises: 0002_revoked_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_compute_jobs"
down_revision = "0002_revoked_tokens"


def upgrade() -> None:

    op.create_table(
        "mantik_compute_jobs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("entry_point", sa.String(length=256), nullable=False),
        sa.Column("workdir", sa.String(length=4096), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("mantik_compute_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mantik_compute_jobs_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_mantik_compute_jobs_site"), ["site"], unique=False)
        batch_op.create_index(batch_op.f("ix_mantik_compute_jobs_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mantik_compute_jobs_username"), ["username"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("mantik_compute_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mantik_compute_jobs_username"))
        batch_op.drop_index(batch_op.f("ix_mantik_compute_jobs_state"))
        batch_op.drop_index(batch_op.f("ix_mantik_compute_jobs_site"))
        batch_op.drop_index(batch_op.f("ix_mantik_compute_jobs_experiment_id"))

    op.drop_table("mantik_compute_jobs")
