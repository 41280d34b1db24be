"""Check constraints get the names the models give them (they were doubled).

Revisions 0001-0003 passed names that already carried the `ck_<table>_` prefix
through the naming convention, which added it again
(`ck_job_execution_ck_job_execution_status`). Renaming changes no rule and
takes no lock beyond a moment's on each table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RENAMED = (
    ("job_execution", "status"),
    ("job_execution", "trigger"),
    ("job_execution", "attempt_positive"),
    ("job_execution", "completed_iff_terminal"),
    ("global_pause", "single_row"),
)


def _rename(table: str, old: str, new: str) -> None:
    # Only where the old name is present: a database created some other way keeps its own.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = '{table}'::regclass AND conname = '{old}') THEN
                ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new};
            END IF;
        END $$
        """
    )


def upgrade() -> None:
    for table, name in _RENAMED:
        _rename(table, f"ck_{table}_ck_{table}_{name}", f"ck_{table}_{name}")


def downgrade() -> None:
    for table, name in _RENAMED:
        _rename(table, f"ck_{table}_{name}", f"ck_{table}_ck_{table}_{name}")
