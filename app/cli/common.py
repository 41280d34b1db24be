"""What every command starts from: settings, jobs, the database, exit codes, tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.config import Settings
from app.core.display import printable
from app.core.job import ConfiguredJob
from app.errors import UnknownJob
from app.http_jobs.registry_file import load_jobs_file
from app.ops.logs import configure_logging
from app.registry import (
    JobRegistry,
    configure,
    load_registry,
    unknown_job_message,
    unmatched_overrides,
)
from app.store.database import Database
from app.store.embedded import start_embedded
from app.store.facade import Store
from app.store.migrations import ensure_at_head, upgrade_to_head

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


@dataclass
class Deployment:
    """What every command starts from: settings, the registry and its configuration."""

    settings: Settings
    registry: JobRegistry
    jobs: list[ConfiguredJob]


def load_deployment(environ: dict[str, str] | None = None) -> Deployment:
    """Settings, JOBS_MODULE's jobs then JOBS_FILE's, configured; ConfigError on any mistake."""
    settings = Settings.from_env(environ)
    configure_logging(settings.log_level, log_format=settings.log_format, secrets=settings.secrets)
    registry = load_registry(settings.jobs_module)
    if settings.jobs_file is not None:  # its HTTP jobs run after the module's
        registry = JobRegistry([*registry, *load_jobs_file(settings.jobs_file, registry.names)])
    jobs = configure(registry, settings)
    for variable in unmatched_overrides(registry, settings):
        logger.warning(
            "%s names no registered job; check its spelling",
            variable,
            extra={"event": "unmatched_job_variable", "variable": variable},
        )
    return Deployment(settings, registry, jobs)


def open_database(
    settings: Settings, *, migrate_embedded: bool = True, announce: bool = False
) -> Database:
    """Connect to DATABASE_URL, or start the embedded server (migrated) when it is unset.

    `announce`: say at INFO that the embedded server is used (the worker does); a
    command that prints a table says it at DEBUG, so the table stays clean.
    """
    if settings.database_url is not None:
        database = Database(settings.database_url, pooler=settings.database_pooler)
        database.ping()
        return database
    level = logging.INFO if announce else logging.DEBUG
    database = Database(start_embedded(settings.data_dir, level=level))
    if migrate_embedded:
        before, after = upgrade_to_head(database)
        if before != after:
            logger.info(
                "migrated the embedded database from %s to %s",
                before or "empty",
                after,
                extra={"event": "schema_migrated"},
            )
    return database


def ready_store(settings: Settings, *, announce: bool = False) -> Store:
    """The store on a database whose schema is at head (exit 2 with advice otherwise)."""
    database = open_database(settings, announce=announce)
    ensure_at_head(database)
    return Store(database)


# -- commands ----------------------------------------------------------------


def known_job(store: Store, deployment: Deployment, name: str) -> str:
    if name in deployment.registry or name in store.recorded_job_names():
        return name
    raise UnknownJob(unknown_job_message(name, deployment.registry.names))


def fmt_time(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(settings.cron_tz).isoformat(sep=" ", timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns; every cell printable (a reason cannot move the cursor)."""
    lines = [[printable(str(cell)) for cell in line] for line in (headers, *rows)]
    widths = [max(len(c) for c in col) for col in zip(*lines, strict=False)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip()
        for line in lines
    )
