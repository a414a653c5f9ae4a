"""idempotent submission: the clients' Idempotency-Keys and the runs they made

Revision ID: 0010_submission_keys
Revises: 0009_shared_state
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_submission_keys"
down_revision = "0009_shared_state"


def upgrade() -> None:
    op.create_table(
        "mantik_submission_keys",
        sa.Column("username", sa.String(length=64), primary_key=True),
        sa.Column("key", sa.String(length=128), primary_key=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_mantik_submission_keys_created_at", "mantik_submission_keys", ["created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_mantik_submission_keys_created_at", "mantik_submission_keys")
    op.drop_table("mantik_submission_keys")
