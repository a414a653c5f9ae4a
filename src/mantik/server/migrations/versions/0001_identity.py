"""identity

Revision ID: 0001_identity
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_identity"
down_revision = None


def upgrade() -> None:

    op.create_table(
        "mantik_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mantik_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mantik_users_username"), ["username"], unique=True)

    op.create_table(
        "mantik_refresh_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["mantik_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mantik_refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mantik_refresh_tokens_family"), ["family"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_mantik_refresh_tokens_token_hash"), ["token_hash"], unique=True
        )


def downgrade() -> None:

    with op.batch_alter_table("mantik_refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mantik_refresh_tokens_token_hash"))
        batch_op.drop_index(batch_op.f("ix_mantik_refresh_tokens_family"))

    op.drop_table("mantik_refresh_tokens")
    with op.batch_alter_table("mantik_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mantik_users_username"))

    op.drop_table("mantik_users")
