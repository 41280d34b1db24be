"""Alembic creates everything, downgrades cleanly, and agrees with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app.db import Database
from app.migrations import current_revision, downgrade, head_revision, upgrade_to_head
from app.models import Base


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
