"""A pooled connection used through psycopg directly: the claim's and the finish's path.

A no-op run is four statements in two checkouts. Through SQLAlchemy's
``Connection`` each checkout and each statement pays for objects, events and
result wrappers that cost more, on a local server, than the round trips they
wrap. Here the pool, its reset on return and SQLAlchemy's error types are kept,
and the rest is psycopg: a driver error is raised as the SQLAlchemy error it
would have been, and a lost or interrupted connection never goes back to the pool.

Code that needs SQLAlchemy itself (an ORM session for a pre-check, a statement
built per call) asks for ``sqlalchemy()``: a ``Connection`` adopting the same
pooled connection, inside the transaction already under way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import PoolProxiedConnection

from app.store.statements import CompiledStatement


def psycopg_connection(pooled: PoolProxiedConnection) -> psycopg.Connection[Any]:
    """The psycopg connection under a pooled one."""
    driver = pooled.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"cronlock needs the psycopg 3 driver, not {type(driver).__name__}")
    return driver


class DriverConnection:
    """One checkout of the pool, used through its psycopg connection.

    Made by `checkout` it owns the checkout: `commit` or `rollback`, then `close`.
    Made by `under` it borrows a SQLAlchemy ``Connection``'s, whose owner ends it.
    """

    __slots__ = ("_adopted", "_engine", "_pooled", "driver")

    def __init__(
        self, engine: Engine, pooled: PoolProxiedConnection, adopted: Connection | None = None
    ) -> None:
        self._engine = engine
        self._pooled: PoolProxiedConnection | None = pooled
        self._adopted = adopted
        self.driver = psycopg_connection(pooled)

    @classmethod
    def checkout(cls, engine: Engine) -> DriverConnection:
        """Take a connection from `engine`'s pool; a connect error comes back as SQLAlchemy's."""
        try:
            pooled = engine.raw_connection()
        except psycopg.Error as exc:
            raise _as_sqlalchemy(engine, exc, None, None, lost=False) from exc
        try:
            return cls(engine, pooled)
        except TypeError:
            pooled.close()
            raise

    @classmethod
    def under(cls, conn: Connection) -> DriverConnection:
        """The driver side of an open SQLAlchemy connection, for the compiled statements."""
        return cls(conn.engine, conn.connection, adopted=conn)

    @property
    def invalidated(self) -> bool:
        """True once the connection was thrown away (lost, interrupted, or stuck)."""
        adopted = self._adopted
        return (
            self._pooled is None
            or self.driver.closed
            or (adopted is not None and adopted.invalidated)
        )

    def fetch_all(self, statement: CompiledStatement, params: Mapping[str, Any]) -> list[Any]:
        """Run `statement`; its rows, as named tuples."""
        values = {**statement.fixed, **params} if statement.fixed else params
        try:
            cursor = self.driver.cursor(row_factory=statement.row_maker)
            return cursor.execute(statement.sql, values).fetchall()
        except BaseException as exc:
            self._failed(exc, statement.sql, values)
            raise

    def fetch_one(self, statement: CompiledStatement, params: Mapping[str, Any]) -> Any:
        """The first row of `statement`, or None."""
        rows = self.fetch_all(statement, params)
        return rows[0] if rows else None

    def sqlalchemy(self) -> Connection:
        """A SQLAlchemy ``Connection`` on this checkout, in the transaction under way."""
        if self._adopted is None:
            if self._pooled is None:
                raise RuntimeError("the connection was thrown away")
            adopted = Connection(self._engine, connection=self._pooled)
            adopted.begin()  # psycopg's transaction is already open: this sends nothing
            self._adopted = adopted
        return self._adopted

    def switch_autocommit(self, *, on: bool) -> bool:
        """Switch the driver's autocommit; False, with the connection thrown away, if it refuses.

        psycopg refuses in the middle of a statement or a transaction (an
        interrupted one, say); such a connection must never be pooled in either mode.
        """
        if self.invalidated:
            return False
        try:
            self.driver.autocommit = on
        except psycopg.Error as exc:
            self.invalidate(exc)
            return False
        return True

    def commit(self) -> None:
        """Commit the transaction."""
        if self._adopted is not None:
            self._adopted.commit()
            return
        try:
            self.driver.commit()
        except BaseException as exc:
            self._failed(exc, "COMMIT", None)
            raise

    def rollback(self) -> None:
        """Roll back, on the way out of an error: a failure here throws the connection away."""
        if self.invalidated:
            return
        try:
            if self._adopted is not None:
                self._adopted.rollback()
            else:
                self.driver.rollback()
        except BaseException as exc:
            self.invalidate(exc)
            if not isinstance(exc, Exception):  # an interrupt still interrupts
                raise
            # Otherwise the error being handled matters more than this one.

    def close(self) -> None:
        """Give the connection back to the pool (which rolls back anything left)."""
        pooled, self._pooled = self._pooled, None
        if self._adopted is not None:
            self._adopted.close()
        elif pooled is not None:
            pooled.close()

    def invalidate(self, exc: BaseException) -> None:
        """Throw the connection away: the pool opens a new one in its place."""
        pooled, self._pooled = self._pooled, None
        if self._adopted is not None:
            self._adopted.invalidate(exc)
        elif pooled is not None:
            pooled.invalidate(exc)

    def _failed(self, exc: BaseException, sql: str, params: Mapping[str, Any] | None) -> None:
        """Raise a driver error as SQLAlchemy's; drop a connection lost or interrupted mid-call."""
        if isinstance(exc, psycopg.Error):
            engine = self._engine
            error: Any = exc  # SQLAlchemy types it as its DBAPI protocol's Error
            # The psycopg connection, not the pooled proxy: the proxy has nothing to
            # ask once SQLAlchemy itself has thrown the connection away.
            driver: Any = self.driver  # typed as SQLAlchemy's DBAPI protocol there
            lost = engine.dialect.is_disconnect(error, driver, None)
            if lost:
                if self._pooled is not None:
                    # What execute() does on a disconnect: retire every pooled connection
                    # opened before this one (the same outage most likely broke them).
                    engine.pool._invalidate(self._pooled, exc, _checkin=False)
                self.invalidate(exc)
            raise _as_sqlalchemy(engine, exc, sql, params, lost=lost) from exc
        if not isinstance(exc, Exception):
            # Interrupted mid-call (a signal, the job alarm): the connection's state
            # is unknown, so it never goes back to the pool.
            self.invalidate(exc)


def _as_sqlalchemy(
    engine: Engine,
    exc: psycopg.Error,
    sql: str | None,
    params: Mapping[str, Any] | None,
    *,
    lost: bool,
) -> StatementError:
    """The SQLAlchemy error `execute` would have raised for driver error `exc`."""
    return DBAPIError.instance(
        sql,
        params,
        exc,
        psycopg.Error,
        hide_parameters=engine.hide_parameters,
        connection_invalidated=lost,
        dialect=engine.dialect,
    )
