"""A run's parameters, whether it was a dry run, and who asked for it.

Manual runs may carry parameters (validated by the job's model) and be dry runs;
`requested_by` names the operator or the console token that started one. All
three are NULL/false for scheduled runs, so existing rows need no rewrite:
adding a column with a constant default is instant in PostgreSQL 11+.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job_execution", sa.Column("params", postgresql.JSONB(none_as_null=True)))
    op.add_column(
        "job_execution",
        sa.Column("dry_run", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("job_execution", sa.Column("requested_by", sa.Text()))


def downgrade() -> None:
    op.drop_column("job_execution", "requested_by")
    op.drop_column("job_execution", "dry_run")
    op.drop_column("job_execution", "params")
