"""Alembic environment: runs on the connection cronlock hands it, or on DATABASE_URL."""

from __future__ import annotations

from alembic import context
from dotenv import load_dotenv
from sqlalchemy import create_engine

from app.config import Settings
from app.errors import ConfigError
from app.store.models import Base

target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection when given one (the CLI, tests), else DATABASE_URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    load_dotenv(".env", override=False)
    url = Settings.from_env().database_url
    if url is None:
        raise ConfigError(
            "DATABASE_URL is not set; `cronlock migrate` also handles the embedded default"
        )
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise ConfigError("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
