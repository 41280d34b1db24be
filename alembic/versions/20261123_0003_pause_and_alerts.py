"""Pausing jobs (one or all) from the CLI, and the alert state of failure streaks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job", sa.Column("paused_at", sa.DateTime(timezone=True)))
    op.add_column("job", sa.Column("paused_reason", sa.Text()))
    op.add_column("job", sa.Column("paused_by", sa.Text()))
    op.add_column("job", sa.Column("alerted_at", sa.DateTime(timezone=True)))
    op.create_table(
        "global_pause",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "paused_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("paused_reason", sa.Text(), nullable=False),
        sa.Column("paused_by", sa.Text(), nullable=False),
        sa.CheckConstraint("id", name="ck_global_pause_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_global_pause"),
    )


def downgrade() -> None:
    op.drop_table("global_pause")
    op.drop_column("job", "alerted_at")
    op.drop_column("job", "paused_by")
    op.drop_column("job", "paused_reason")
    op.drop_column("job", "paused_at")
