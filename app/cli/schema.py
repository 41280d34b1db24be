"""Commands about the database itself: migrate and check."""

from __future__ import annotations

import argparse
import logging

from app.cli.common import (
    EXIT_OK,
    Deployment,
    open_database,
)
from app.errors import DatabaseError
from app.store.migrations import (
    current_revision,
    ensure_at_head,
    head_revision,
    missing_privileges,
    upgrade_to_head,
)

logger = logging.getLogger(__name__)


def cmd_migrate(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Upgrade the schema to the latest revision."""
    database = open_database(deployment.settings, migrate_embedded=False)
    before, after = upgrade_to_head(database)
    if before == after:
        print(f"schema already at {after} on {database.display_url}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {after} on {database.display_url}")
    return EXIT_OK


def cmd_check(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Configuration, registry, database and schema; exit 2 when any is wrong."""
    settings = deployment.settings
    enabled = sum(j.enabled for j in deployment.jobs)
    print(
        f"ok    configuration (CRON_TZ={settings.cron_tz.key}, JOBS_MODULE={settings.jobs_module})"
    )
    print(f"ok    registry: {len(deployment.jobs)} jobs, {enabled} enabled, schedules valid")
    if settings.database_url is None:
        # A probe writes nothing: starting the embedded server would create it.
        print(
            f"skip  database: DATABASE_URL is unset, so the embedded PostgreSQL in "
            f"{settings.data_dir} is created and migrated by the first command that needs it"
        )
        return EXIT_OK
    database = open_database(settings, migrate_embedded=False)
    print(f"ok    database reachable at {database.display_url}")
    current, head = current_revision(database), head_revision()
    if current != head:
        ensure_at_head(database)
    print(f"ok    schema at head ({head})")
    missing = missing_privileges(database)
    if missing:
        raise DatabaseError(
            f"the role connecting to {database.display_url} can read but not write cronlock's "
            f"tables (missing {', '.join(missing)}); grant them, e.g. "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON job, job_execution, global_pause TO <role>"
        )
    print("ok    the role may read and write cronlock's tables")
    return EXIT_OK


# -- entry point ---------------------------------------------------------------
