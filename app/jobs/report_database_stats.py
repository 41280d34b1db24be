"""report-database-stats: the example job, visible within a minute of `make run`.

Every minute it measures the database cronlock runs on (size, open connections,
runs recorded in the last hour) and logs one line; the figures are stored as the
run's result, so `cronlock history report-database-stats` shows them too.
"""

from __future__ import annotations

from sqlalchemy import text

from app.job import RunContext, job

_STATS = text(
    """
    SELECT pg_database_size(current_database()) AS size_bytes,
           (SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database()) AS connections,
           (SELECT count(*) FROM job_execution
             WHERE started_at > now() - interval '1 hour') AS runs_last_hour
    """
)


@job("report-database-stats", schedule="* * * * *")
def report_database_stats(ctx: RunContext) -> dict[str, int]:
    """Log the database's size, connections and recent runs."""
    with ctx.session() as session:
        row = session.execute(_STATS).one()
    ctx.logger.info(
        "database is %.1f MB with %d connections; %d runs in the last hour",
        row.size_bytes / 1_000_000,
        row.connections,
        row.runs_last_hour,
    )
    return {
        "size_bytes": int(row.size_bytes),
        "connections": int(row.connections),
        "runs_last_hour": int(row.runs_last_hour),
    }
