"""The Database wrapper: autocommit connections go back to the pool transactional."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.db import Database


def test_a_connection_used_for_autocommit_is_transactional_again(database: Database):
    with database.autocommit() as conn:
        conn.execute(text("CREATE TABLE scratch (n int)"))
        conn.execute(text("INSERT INTO scratch VALUES (1)"))
    with pytest.raises(RuntimeError, match="roll it back"):
        _insert_then_fail(database)
    with database.autocommit() as conn:
        assert conn.execute(text("SELECT array_agg(n) FROM scratch")).scalar_one() == [1]


def _insert_then_fail(database: Database) -> None:
    with database.connection() as conn:  # the pooled connection autocommit used
        conn.execute(text("INSERT INTO scratch VALUES (2)"))
        raise RuntimeError("roll it back")
