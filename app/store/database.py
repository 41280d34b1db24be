"""Engine and session factories, and the one place driver errors become ours.

The worker holds at most one connection at a time and does not ping the pool,
so an idle worker sends nothing to the database between ticks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from app.core.redaction import scrub, secrets_in
from app.errors import DatabaseError, DatabaseUnavailable, SchemaMissing, ValueRefused
from app.store.driver import DriverConnection

CONNECT_TIMEOUT_S = 5

# A server that vanishes without closing its sockets (a failover, a host lost, a
# NAT or load-balancer mapping dropped) leaves a read that waits for the kernel's
# defaults: two hours and more. These give such a connection up after about 25 s
# of silence: inside the worker's liveness limits (/healthz allows 45 s, the
# systemd unit's WatchdogSec 60 s), so the worker recovers instead of being
# restarted, and well before the default stale threshold (60 s). libpq ignores
# them on Unix sockets.
LIBPQ_DEFAULTS: Mapping[str, int] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # ms: data the server never acknowledges
}


# How connections reach the server, as DATABASE_POOLER names it. Behind a pooler in
# transaction mode consecutive transactions of one connection may run on different
# server connections, so psycopg must not prepare statements server-side (it does,
# by default, from a statement's fifth execution): PgBouncer before 1.21, or without
# max_prepared_statements, answers the next execution with "prepared statement
# _pg3_… does not exist".
POOLERS: tuple[str, ...] = ("none", "session", "transaction")


def redact(url: str) -> str:
    """Render a database URL for logs and messages, its password hidden wherever it is."""
    rendered = make_url(url).render_as_string(hide_password=True)
    return scrub(rendered, secrets_in({}, url))


def connect_args(url: str, application_name: str) -> dict[str, Any]:
    """libpq parameters for `url`'s connections: ours, unless the URL's query sets them."""
    given = make_url(url).query
    defaults = {**LIBPQ_DEFAULTS, "application_name": application_name}
    return {name: value for name, value in defaults.items() if name not in given}


# What a transaction-mode pooler answers to a statement prepared on another server
# connection (or to one prepared twice on the same).
_PREPARED_STATEMENT_LOST = (
    psycopg.errors.InvalidSqlStatementName,
    psycopg.errors.DuplicatePreparedStatement,
)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class Database:
    """A connection pool to cronlock's database, with error translation."""

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "cronlock",
        pool_timeout_s: float = 30,
        pooler: str = "none",
    ) -> None:
        if pooler not in POOLERS:
            raise ValueError(f"unknown pooler {pooler!r}; one of {', '.join(POOLERS)}")
        self.url = url
        self.pooler = pooler
        driver_args: dict[str, Any] = connect_args(url, application_name)
        if pooler == "transaction":
            driver_args["prepare_threshold"] = None  # psycopg: never prepare server-side
        self.engine: Engine = create_engine(
            url,
            pool_size=2,
            max_overflow=4,
            pool_timeout=pool_timeout_s,
            pool_pre_ping=False,
            connect_args=driver_args,
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The URL with its password hidden."""
        return redact(self.url)

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Turn driver errors into DatabaseError/DatabaseUnavailable, keeping the cause."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database at {self.display_url}: {_first_line(exc)}; "
                "check DATABASE_URL and that the server is running"
            ) from exc
        except PoolTimeout as exc:
            # Every pooled connection is taken (job bodies share the pool): as good as
            # unreachable for this caller, which retries or backs off the same way.
            raise DatabaseUnavailable(
                f"no free connection to {self.display_url} in the pool: {_first_line(exc)}; "
                "job bodies that use ctx.database must give their connections back"
            ) from exc
        except IntegrityError:
            # An invariant refused a write: the lock layer decides what that means.
            raise
        except DataError as exc:
            raise ValueRefused(
                f"the database at {self.display_url} refused a value: {_first_line(exc)}"
            ) from exc
        except DBAPIError as exc:
            if isinstance(exc.orig, psycopg.errors.UndefinedTable):
                raise SchemaMissing(
                    f"cronlock's tables are gone from the database at {self.display_url} "
                    f"({_first_line(exc)}); restore them from a backup, or run "
                    "`cronlock migrate` for an empty schema, then restart the workers"
                ) from exc
            if isinstance(exc.orig, _PREPARED_STATEMENT_LOST) and self.pooler != "transaction":
                raise DatabaseError(
                    f"database error at {self.display_url}: {_first_line(exc)}; most likely "
                    "a pooler in transaction mode (PgBouncer) sits between cronlock and "
                    "PostgreSQL: set DATABASE_POOLER=transaction"
                ) from exc
            raise DatabaseError(
                f"database error at {self.display_url}: {_first_line(exc)}"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        with self.translated_errors(), self._sessions.begin() as session:
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """One transaction on a plain connection: the lock's hot path, without an ORM session."""
        with self.translated_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection whose every statement commits on its own: one round trip each.

        Autocommit is switched on the driver's connection, and back before the pool
        takes it again: SQLAlchemy's isolation-level option does the same with
        more work per checkout.
        """
        with self.translated_errors(), self.engine.connect() as conn:
            driver = DriverConnection.under(conn)
            if not driver.switch_autocommit(on=True):
                raise self._cannot_autocommit()
            try:
                yield conn
            finally:
                driver.switch_autocommit(on=False)

    @contextmanager
    def driver(self, *, autocommit: bool = False) -> Iterator[DriverConnection]:
        """The claim's and the finish's connection: psycopg, without SQLAlchemy's Connection.

        One transaction, committed on success and rolled back on any exception;
        with `autocommit`, statements that each commit on their own instead.
        """
        with self.translated_errors():
            driver = DriverConnection.checkout(self.engine)
            try:
                if autocommit and not driver.switch_autocommit(on=True):
                    raise self._cannot_autocommit()
                yield driver
                if not autocommit:
                    driver.commit()
            except BaseException:
                driver.rollback()
                raise
            finally:
                if autocommit:
                    driver.switch_autocommit(on=False)
                driver.close()

    def _cannot_autocommit(self) -> DatabaseError:
        return DatabaseError(f"database error at {self.display_url}: cannot autocommit")

    def session(self) -> Session:
        """A new session for code that manages its own transactions (job bodies)."""
        return self._sessions()

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with self.autocommit() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def limit_waits(conn: Connection, timeout_s: float, *, locks: bool = False) -> None:
    """Cap each statement of `conn`'s current transaction at `timeout_s` (and, with
    `locks`, each wait for a row or table lock): SET LOCAL, gone with the transaction."""
    milliseconds = str(max(int(timeout_s * 1000), 1))
    settings = [func.set_config("statement_timeout", milliseconds, True)]
    if locks:
        settings.append(func.set_config("lock_timeout", milliseconds, True))
    conn.execute(select(*settings))


def cap_statements(session: Session, timeout_s: float) -> None:
    """Give every transaction of `session` a statement_timeout of `timeout_s`."""

    @event.listens_for(session, "after_begin")
    def _cap(_s: Session, _tx: SessionTransaction, connection: Connection) -> None:
        limit_waits(connection, timeout_s)
