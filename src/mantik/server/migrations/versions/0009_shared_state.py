"""replicas: change counters, signing keys and shared secrets in the database

Revision ID: 0009_shared_state
Revises: 0008_jobs_handover
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_shared_state"
down_revision = "0008_jobs_handover"


def upgrade() -> None:
    op.create_table(
        "mantik_change_stamps",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "mantik_signing_keys",
        sa.Column("kid", sa.String(length=64), primary_key=True),
        sa.Column("private_key_pem", sa.String(length=8192), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "mantik_shared_secrets",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.String(length=512), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mantik_shared_secrets")
    op.drop_table("mantik_signing_keys")
    op.drop_table("mantik_change_stamps")
