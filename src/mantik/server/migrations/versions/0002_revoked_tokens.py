"""revoked tokens

Revision ID: 0002_revoked_tokens
Revises: 0001_identity
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_revoked_tokens"
down_revision = "0001_identity"


def upgrade() -> None:

    op.create_table(
        "mantik_revoked_tokens",
        sa.Column("jti", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("mantik_revoked_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mantik_revoked_tokens_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("mantik_revoked_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mantik_revoked_tokens_expires_at"))

    op.drop_table("mantik_revoked_tokens")
