"""offline sync: a high-water mark for metric-to-model links made after their points

Revision ID: 0005_offline_link_mark
Revises: 0004_offline_sync
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_offline_link_mark"
down_revision = "0004_offline_sync"


def upgrade() -> None:
    with op.batch_alter_table("mantik_offline_runs") as table:
        table.add_column(
            sa.Column("link_rowid", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("mantik_offline_runs") as table:
        table.drop_column("link_rowid")
