"""The Database wrapper: connections go back to the pool as they were taken, or not at all."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from app.errors import DatabaseError, DatabaseUnavailable
from app.runtime.interrupts import Alarm, RunInterrupted
from app.store.database import LIBPQ_DEFAULTS, Database
from app.store.statements import compile_statement
from tests.integration.network import Relay, through, upstream_of

BACKEND = compile_statement(select(func.pg_backend_pid().label("pid")))
INSERT = compile_statement(text("INSERT INTO scratch VALUES (:n) RETURNING n"))


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
    with pytest.raises(RunInterrupted), alarm.body(), database.driver() as conn:
        conn.fetch_all(sleeping, {})
    alarm.disarm()
    with database.autocommit() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid


def _scratch(database: Database) -> list[int]:
    with database.autocommit() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS scratch (n int)"))
        return list(conn.execute(text("SELECT n FROM scratch ORDER BY n")).scalars())


def test_a_driver_transaction_commits_on_success_and_rolls_back_on_error(database: Database):
    _scratch(database)
    with database.driver() as conn:
        assert conn.fetch_one(INSERT, {"n": 1}).n == 1
    with pytest.raises(RuntimeError, match="roll it back"):
        _insert_twice_then_fail(database)
    assert _scratch(database) == [1]


def _insert_twice_then_fail(database: Database) -> None:
    with database.driver() as conn:
        conn.fetch_one(INSERT, {"n": 2})
        conn.sqlalchemy().execute(text("INSERT INTO scratch VALUES (3)"))
        raise RuntimeError("roll it back")


def test_sqlalchemy_on_a_driver_connection_joins_its_transaction(database: Database):
    _scratch(database)
    with database.driver() as conn:
        pid = conn.fetch_one(BACKEND, {}).pid
        conn.fetch_one(INSERT, {"n": 1})
        adopted = conn.sqlalchemy()
        assert adopted.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
        assert adopted.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 1
        adopted.execute(text("INSERT INTO scratch VALUES (2)"))
    assert _scratch(database) == [1, 2]


def test_a_driver_connection_used_for_autocommit_is_transactional_again(database: Database):
    with database.driver(autocommit=True) as conn:
        pid = conn.fetch_one(BACKEND, {}).pid
        assert conn.driver.autocommit
    with database.driver() as conn:  # the same pooled connection, transactional
        assert conn.fetch_one(BACKEND, {}).pid == pid
        assert not conn.driver.autocommit


def test_a_driver_error_is_sqlalchemys_and_the_connection_is_reused(database: Database):
    with database.driver() as conn:
        pid = conn.fetch_one(BACKEND, {}).pid
    with pytest.raises(DatabaseError, match="scratch_missing"), database.driver() as conn:
        conn.fetch_all(compile_statement(text("SELECT * FROM scratch_missing")), {})
    with database.driver() as conn:
        assert conn.fetch_one(BACKEND, {}).pid == pid


def test_a_connection_sqlalchemy_lost_is_unavailable_on_the_driver_too(database: Database):
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        _lose_under_sqlalchemy_then_fetch(database)
    with database.driver() as conn:
        assert conn.fetch_one(BACKEND, {}).pid > 0


def _lose_under_sqlalchemy_then_fetch(database: Database) -> None:
    with database.driver() as conn:
        with contextlib.suppress(OperationalError):  # as a pre-check that swallows it would
            conn.sqlalchemy().execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert conn.invalidated
        conn.fetch_one(BACKEND, {})


def test_a_driver_connection_stuck_in_a_transaction_is_not_pooled(database: Database):
    _scratch(database)
    with database.driver(autocommit=True) as conn:
        pid = conn.fetch_one(BACKEND, {}).pid
        conn.driver.execute("BEGIN")  # psycopg refuses to leave autocommit inside it
        conn.fetch_one(INSERT, {"n": 1})
    with database.driver() as conn:
        assert conn.fetch_one(BACKEND, {}).pid != pid
    assert _scratch(database) == []


def test_an_unreachable_server_is_a_clear_error_from_the_driver_path():
    database = Database("postgresql+psycopg://cronlock@127.0.0.1:1/cronlock")
    with (
        pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1.*check DATABASE_URL"),
        database.driver(),
    ):
        pass


def test_a_pool_with_no_free_connection_is_unavailable_not_a_crash(db_url: str):
    # Job bodies share the pool; when they hold every connection, the worker's own
    # checkouts must fail the way an outage does, which every caller handles.
    database = Database(db_url, pool_timeout_s=0.2)
    held = [database.engine.connect() for _ in range(6)]
    try:
        with pytest.raises(DatabaseUnavailable, match="no free connection"), database.driver():
            pass
        with (
            pytest.raises(DatabaseUnavailable, match="no free connection"),
            database.transaction() as session,
        ):
            session.execute(select(1))
    finally:
        for conn in held:
            conn.close()
        database.dispose()


def _keepalive_options(fd: int) -> dict[str, int]:
    with socket.socket(fileno=os.dup(fd)) as sock:
        return {
            "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {}),
        (
            {"keepalives_idle": "7", "tcp_user_timeout": "9000"},
            {"keepalives_idle": 7, "tcp_user_timeout": 9000},
        ),
    ],
    ids=["defaults", "the-url-wins"],
)
def test_tcp_connections_carry_keepalives_and_the_url_overrides_them(
    pg_admin_url: str, db_url: str, query: dict[str, str], expected: dict[str, int]
):
    """A server gone silent is noticed in about a minute: the options are on the real socket."""
    relay = Relay(upstream_of(pg_admin_url)).start()
    database = Database(through(db_url, relay.port, **query))
    try:
        with database.driver() as conn:
            options = _keepalive_options(conn.driver.fileno())
    finally:
        database.dispose()
        relay.close()
    assert (
        options
        == {name: int(value) for name, value in LIBPQ_DEFAULTS.items() if name != "connect_timeout"}
        | expected
    )
