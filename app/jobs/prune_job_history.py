"""prune-job-history: keep job_execution small by deleting old finished runs."""

from __future__ import annotations

from datetime import timedelta

from app.job import RunContext, job
from app.store.history import prune_runs

BATCH_SIZE = 1000


@job("prune-job-history", schedule="17 3 * * *")
def prune_job_history(ctx: RunContext) -> dict[str, int]:
    """Delete finished runs older than JOB_HISTORY_RETENTION_DAYS, in batches."""
    days = ctx.settings.history_retention_days
    deleted = prune_runs(ctx.database, older_than=timedelta(days=days), batch_size=BATCH_SIZE)
    ctx.logger.info("deleted %d runs older than %d days", deleted, days)
    return {"deleted": deleted, "retention_days": days}
