"""compute: which platform process is handing a job to its site (until the site's job id
is recorded), so that a crash in between is found and reconciled

Revision ID: 0008_jobs_handover
Revises: 0007_jobs_run_as
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_jobs_handover"
down_revision = "0007_jobs_run_as"


def upgrade() -> None:
    with op.batch_alter_table("mantik_compute_jobs") as table:
        table.add_column(sa.Column("handover_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mantik_compute_jobs") as table:
        table.drop_column("handover_by")
