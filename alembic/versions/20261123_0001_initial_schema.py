"""Initial schema: the per-job lock row and the run history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name="pk_job"),
    )
    op.create_table(
        "job_execution",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("job_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.CheckConstraint(
            "status IN ('RUNNING', 'SUCCESS', 'FAILURE')", name="ck_job_execution_status"
        ),
        sa.CheckConstraint("trigger IN ('schedule', 'manual')", name="ck_job_execution_trigger"),
        sa.CheckConstraint("attempt >= 1", name="ck_job_execution_attempt_positive"),
        sa.CheckConstraint(
            "(status = 'RUNNING') = (completed_at IS NULL)",
            name="ck_job_execution_completed_iff_terminal",
        ),
        sa.ForeignKeyConstraint(
            ["job_name"], ["job.name"], name="fk_job_execution_job_name_job", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_execution"),
    )
    op.create_index(
        "uq_job_execution_one_running_per_job",
        "job_execution",
        ["job_name"],
        unique=True,
        postgresql_where=sa.text("status = 'RUNNING'"),
    )
    op.create_index(
        "uq_job_execution_one_success_per_instant",
        "job_execution",
        ["job_name", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("status = 'SUCCESS'"),
    )
    op.create_index(
        "ix_job_execution_job_name_scheduled_for", "job_execution", ["job_name", "scheduled_for"]
    )
    op.create_index("ix_job_execution_started_at", "job_execution", ["started_at"])


def downgrade() -> None:
    op.drop_table("job_execution")
    op.drop_table("job")
