"""Schema revisions through Alembic, driven from code so the CLI needs no alembic.ini lookup."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from app.errors import DatabaseError, SchemaAhead, SchemaNotAtHead
from app.store.database import Database


def _revisions_root() -> Path:
    """Where alembic.ini and alembic/ are: the source tree, or the installed data files."""
    source = Path(__file__).resolve().parents[2]
    if (source / "alembic" / "env.py").is_file():
        return source
    installed = Path(sys.prefix) / "share" / "cronlock"
    if (installed / "alembic" / "env.py").is_file():
        return installed
    raise RuntimeError(f"cronlock's schema revisions are in neither {source} nor {installed}")


PROJECT_ROOT = _revisions_root()
# How long a revision may queue for a table's lock, holding up every claim behind it.
MIGRATION_LOCK_TIMEOUT_S = 10.0
# Serialises `cronlock migrate` run by several replicas at once.
_MIGRATION_LOCK_KEY = 0x63726F6E6C6F636B  # "cronlock"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at this project's revisions, bound to `connection`."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision the code expects."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the alembic/ folder holds no revision")
    return head


def known_revisions() -> set[str]:
    """Every revision this version of cronlock ships."""
    script = ScriptDirectory.from_config(alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def _refuse_newer(database: Database, current: str | None) -> None:
    """A revision this code does not know was written by a newer cronlock: never go back."""
    if current is not None and current not in known_revisions():
        raise SchemaAhead(
            f"the database at {database.display_url} was migrated by a newer cronlock "
            f"(revision {current}), which this version does not know; upgrade cronlock "
            "on this host (do not run `cronlock migrate` from the older version)"
        )


def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with database.translated_errors(), database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(
    database: Database, *, lock_timeout_s: float = MIGRATION_LOCK_TIMEOUT_S
) -> tuple[str | None, str]:
    """Upgrade to the latest revision; return (before, after).

    A revision that alters a table waits at most `lock_timeout_s` for it: while its
    request for the table's lock is queued, every claim on that table queues
    behind it, so running workers would stall for as long as it waited.
    """
    with database.translated_errors(), database.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        conn.execute(
            text("SELECT set_config('lock_timeout', :ms, true)"),
            {"ms": f"{lock_timeout_s * 1000:.0f}"},
        )
        try:
            before = MigrationContext.configure(conn).get_current_revision()
            _refuse_newer(database, before)
            command.upgrade(alembic_config(conn), "head")
        except OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise
            raise DatabaseError(
                f"the migration waited {lock_timeout_s:g}s for a table that another session "
                f"holds at {database.display_url}; nothing was changed. Run `cronlock migrate` "
                "again, at a quieter moment or with the workers stopped"
            ) from exc
        return before, head_revision()


def downgrade(database: Database, revision: str) -> None:
    """Downgrade to `revision` (`base` empties the schema)."""
    with database.translated_errors(), database.engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def ensure_at_head(database: Database) -> None:
    """Raise SchemaNotAtHead unless the database is at the latest revision."""
    current, head = current_revision(database), head_revision()
    _refuse_newer(database, current)
    if current != head:
        found = f"revision {current}" if current else "no cronlock schema"
        raise SchemaNotAtHead(
            f"the database at {database.display_url} has {found}, the code needs {head}; "
            "run `cronlock migrate`"
        )


# What a worker does to each table: claims insert and update runs, pruning deletes
# them, pauses write the job rows and the global pause.
_NEEDED = {
    "job": ("SELECT", "INSERT", "UPDATE"),
    "job_execution": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "global_pause": ("SELECT", "INSERT", "UPDATE", "DELETE"),
}


def missing_privileges(database: Database) -> list[str]:
    """`table: PRIVILEGE` for each privilege the connecting role lacks on cronlock's tables."""
    checks = [(table, privilege) for table, needed in _NEEDED.items() for privilege in needed]
    query = text(
        "SELECT " + ", ".join(f"has_table_privilege(:t{i}, :p{i})" for i in range(len(checks)))
    )
    params = {f"t{i}": table for i, (table, _) in enumerate(checks)}
    params |= {f"p{i}": privilege for i, (_, privilege) in enumerate(checks)}
    with database.autocommit() as conn:
        granted = conn.execute(query, params).one()
    return [f"{t}: {p}" for (t, p), ok in zip(checks, granted, strict=True) if not ok]
