"""compute: who a job runs as (its OS account and ids), and per-user uids for ``local``

Revision ID: 0007_jobs_run_as
Revises: 0006_token_epoch_throttle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_jobs_run_as"
down_revision = "0006_token_epoch_throttle"


def upgrade() -> None:
    with op.batch_alter_table("mantik_compute_jobs") as table:
        table.add_column(sa.Column("run_as_account", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("run_as_uid", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("run_as_gid", sa.BigInteger(), nullable=True))
    op.create_table(
        "mantik_job_uids",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("username"),
        sa.UniqueConstraint("uid"),
    )


def downgrade() -> None:
    op.drop_table("mantik_job_uids")
    with op.batch_alter_table("mantik_compute_jobs") as table:
        table.drop_column("run_as_gid")
        table.drop_column("run_as_uid")
        table.drop_column("run_as_account")
