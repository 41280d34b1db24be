"""More outcomes (SKIPPED, MISSED), one row per (job, instant, attempt), retry_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("ck_job_execution_status", "job_execution", type_="check")
    op.create_check_constraint(
        "ck_job_execution_status",
        "job_execution",
        "status IN ('RUNNING', 'SUCCESS', 'FAILURE', 'SKIPPED', 'MISSED')",
    )
    op.add_column("job_execution", sa.Column("retry_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_job_execution_retry_at",
        "job_execution",
        ["retry_at"],
        postgresql_where=sa.text("retry_at IS NOT NULL"),
    )
    # The unique (job, instant, attempt) serves every lookup the old index did.
    op.drop_index("ix_job_execution_job_name_scheduled_for", table_name="job_execution")
    op.create_unique_constraint(
        "uq_job_execution_instant_attempt",
        "job_execution",
        ["job_name", "scheduled_for", "attempt"],
    )


def downgrade() -> None:
    op.drop_constraint("uq_job_execution_instant_attempt", "job_execution", type_="unique")
    op.create_index(
        "ix_job_execution_job_name_scheduled_for", "job_execution", ["job_name", "scheduled_for"]
    )
    op.drop_index("ix_job_execution_retry_at", table_name="job_execution")
    op.drop_column("job_execution", "retry_at")
    op.execute("DELETE FROM job_execution WHERE status IN ('SKIPPED', 'MISSED')")
    op.drop_constraint("ck_job_execution_status", "job_execution", type_="check")
    op.create_check_constraint(
        "ck_job_execution_status",
        "job_execution",
        "status IN ('RUNNING', 'SUCCESS', 'FAILURE')",
    )
