"""Alembic creates everything, downgrades cleanly, and agrees with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from app.errors import DatabaseError
from app.store.database import Database
from app.store.migrations import current_revision, downgrade, head_revision, upgrade_to_head
from app.store.models import Base


def _tables(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_upgrade_downgrade_upgrade(empty_db_url: str):
    database = Database(empty_db_url)
    try:
        assert current_revision(database) is None
        assert upgrade_to_head(database) == (None, head_revision())
        assert {"job", "job_execution"} <= _tables(database)
        downgrade(database, "base")
        assert current_revision(database) is None
        assert _tables(database) <= {"alembic_version"}
        upgrade_to_head(database)
        assert current_revision(database) == head_revision()
    finally:
        database.dispose()


def test_models_and_migrations_agree(database: Database):
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_a_migration_that_cannot_get_its_table_gives_up_and_changes_nothing(database: Database):
    """Queued for a table's lock, a migration would hold up every claim behind it."""
    downgrade(database, "0002")
    with database.engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM job"))  # a long query holds the table
        with pytest.raises(DatabaseError, match=r"waited 0\.2s for a table .* nothing was changed"):
            upgrade_to_head(database, lock_timeout_s=0.2)
        reader.rollback()
    assert current_revision(database) == "0002"
    assert upgrade_to_head(database) == ("0002", head_revision())


def test_check_constraints_carry_the_names_the_models_give_them(database: Database):
    expected = set()
    for table in Base.metadata.sorted_tables:
        for constraint in table.constraints:
            if constraint.__class__.__name__ == "CheckConstraint":
                expected.add((table.name, str(constraint.name)))
    with database.engine.connect() as conn:
        found = set(
            conn.execute(
                text(
                    "SELECT conrelid::regclass::text, conname FROM pg_constraint "
                    "WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
                )
            ).all()
        )
    assert found == expected
    assert ("job_execution", "ck_job_execution_status") in found
