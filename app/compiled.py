"""The hot path's statements: written in SQLAlchemy Core, compiled once, sent by psycopg.

A no-op run sends four statements (lock, state, insert, finish). Through
``Connection.execute`` each pays for an execution context and a result wrapper,
which cost more than the round trip itself on a local server. Here the same Core
statement is compiled once, at import, to the SQL SQLAlchemy would send, and run
on the pooled connection's psycopg cursor. The transaction, the pool and error
handling stay SQLAlchemy's: a driver error is re-raised as the SQLAlchemy error
it would have been, and a lost connection empties the pool, as ``execute`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from app.db import driver_connection

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy


@dataclass(frozen=True)
class CompiledStatement:
    """SQL text with %(name)s placeholders, and the values the statement itself binds."""

    sql: str
    fixed: Mapping[str, Any]


def compile_statement(statement: ClauseElement, *, keys: Sequence[str] = ()) -> CompiledStatement:
    """Compile `statement` for psycopg; `keys` are the columns an INSERT takes as parameters."""
    compiled = statement.compile(dialect=_DIALECT, column_keys=list(keys) or None)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not a SQL statement: {statement!r}")
    fixed = {
        name: value
        for name, value in compiled.params.items()
        if value is not None and not compiled.binds[name].required
    }
    return CompiledStatement(str(compiled), fixed)


def fetch_all(
    conn: Connection, statement: CompiledStatement, params: Mapping[str, Any]
) -> list[Any]:
    """Run `statement` on `conn`'s driver connection; its rows, as named tuples."""
    pooled, driver = conn.connection, driver_connection(conn)
    values = {**statement.fixed, **params}
    try:
        return driver.cursor(row_factory=namedtuple_row).execute(statement.sql, values).fetchall()
    except psycopg.Error as exc:
        error: Any = exc  # SQLAlchemy types it as its DBAPI protocol's Error
        lost = conn.dialect.is_disconnect(error, pooled, None)
        if lost:
            # What execute() does on a disconnect: retire this connection and every
            # pooled one opened before it (the same outage most likely broke them),
            # each closed and replaced at its next checkout.
            conn.engine.pool._invalidate(pooled, exc)
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement.sql,
            values,
            exc,
            psycopg.Error,
            hide_parameters=conn.engine.hide_parameters,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # Interrupted mid-statement (a signal, the job alarm): the connection's
            # state is unknown, so it never goes back to the pool.
            conn.invalidate(exc)
        raise


def fetch_one(conn: Connection, statement: CompiledStatement, params: Mapping[str, Any]) -> Any:
    """The first row of `statement`, or None."""
    rows = fetch_all(conn, statement, params)
    return rows[0] if rows else None
