"""The Database wrapper: autocommit connections go back to the pool transactional, or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from app.compiled import compile_statement, fetch_all
from app.db import Database
from app.interrupts import Alarm, RunInterrupted


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


def test_a_connection_that_cannot_leave_autocommit_is_not_pooled(database: Database):
    with database.autocommit() as conn:
        first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.execute(text("CREATE TABLE scratch (n int)"))
        conn.execute(text("BEGIN"))  # psycopg refuses to switch modes inside a transaction
        conn.execute(text("INSERT INTO scratch VALUES (1)"))
    with database.autocommit() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
        assert conn.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 0


def test_a_statement_interrupted_mid_flight_never_returns_its_connection(database: Database):
    """The job alarm can fire while the driver waits for the server: that connection is dropped."""
    sleeping = compile_statement(select(func.pg_sleep(30)))
    alarm = Alarm()
    with database.autocommit() as conn:
        first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    alarm.arm(0.2, "interrupted for the test")
    with pytest.raises(RunInterrupted), alarm.body(), database.connection() as conn:
        fetch_all(conn, sleeping, {})
    alarm.disarm()
    with database.autocommit() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
