"""identity: a per-user token epoch (sign-out everywhere) and a sign-in throttle per
(account, client address) in place of the account-wide lock-out

Revision ID: 0006_token_epoch_throttle
Revises: 0005_offline_link_mark
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_token_epoch_throttle"
down_revision = "0005_offline_link_mark"


def upgrade() -> None:
    with op.batch_alter_table("mantik_users") as table:
        table.add_column(sa.Column("token_epoch", sa.Integer(), nullable=False, server_default="0"))
        table.drop_column("failed_logins")
        table.drop_column("locked_until")
    op.create_table(
        "mantik_sign_in_failures",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", "client"),
    )
    with op.batch_alter_table("mantik_sign_in_failures") as table:
        table.create_index(
            table.f("ix_mantik_sign_in_failures_last_failure_at"), ["last_failure_at"]
        )


def downgrade() -> None:
    op.drop_table("mantik_sign_in_failures")
    with op.batch_alter_table("mantik_users") as table:
        table.drop_column("token_epoch")
        table.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
