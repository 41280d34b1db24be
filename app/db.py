"""Engine and session factories, and the one place driver errors become ours.

The worker holds at most one connection at a time and does not ping the pool,
so an idle worker sends nothing to the database between ticks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import DatabaseError, DatabaseUnavailable

CONNECT_TIMEOUT_S = 5


def redact(url: str) -> str:
    """Render a database URL for logs and messages, password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def driver_connection(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one."""
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"cronlock needs the psycopg 3 driver, not {type(driver).__name__}")
    return driver


def _switch_autocommit(conn: Connection, *, on: bool) -> bool:
    """Switch the driver's autocommit; False, with the connection thrown away, if it refuses.

    psycopg refuses in the middle of a statement or transaction (an interrupted
    one, say); such a connection must never go back to the pool in either mode.
    """
    if conn.invalidated:
        return False
    driver = driver_connection(conn)
    if driver.closed:
        return False
    try:
        driver.autocommit = on
    except psycopg.Error as exc:
        conn.invalidate(exc)
        return False
    return True


class Database:
    """A connection pool to cronlock's database, with error translation."""

    def __init__(self, url: str, *, application_name: str = "cronlock") -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url,
            pool_size=2,
            max_overflow=4,
            pool_pre_ping=False,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": application_name,
            },
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
        except IntegrityError:
            # An invariant refused a write: the lock layer decides what that means.
            raise
        except DBAPIError as exc:
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
        more work per checkout, and a run's outcome is written this way.
        """
        with self.translated_errors(), self.engine.connect() as conn:
            if not _switch_autocommit(conn, on=True):
                raise DatabaseError(f"database error at {self.display_url}: cannot autocommit")
            try:
                yield conn
            finally:
                _switch_autocommit(conn, on=False)

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
