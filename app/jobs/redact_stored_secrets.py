"""redact-stored-secrets: a backfill that masks secrets in runs recorded before they were known.

Errors, results and skip reasons are masked before they are stored, but only for
the secrets the worker knew then. After adding a `*_TOKEN` variable, or rotating
the database password, run this to mask the older rows too. It runs only by hand
(`since` has no default); try it first with `--dry-run`, which counts the rows it
would change and writes nothing:

    cronlock run redact-stored-secrets --param since=2026-11-01 --dry-run
    cronlock run redact-stored-secrets --param since=2026-11-01 --param limit=10000
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from app.core.redaction import scrub, scrub_json
from app.job import RunContext, job
from app.store.models import JobExecution


class RedactParams(BaseModel):
    """What to look through."""

    since: date = Field(description="runs started on or after this day")
    batch_size: int = Field(500, ge=1, le=10_000, description="rows per batch")
    limit: int | None = Field(None, ge=1, description="stop after this many rows")


@job("redact-stored-secrets", params=RedactParams)
def redact_stored_secrets(ctx: RunContext) -> dict[str, Any]:
    """Mask the secrets this worker knows in stored errors and results."""
    params: RedactParams = ctx.params
    secrets = ctx.settings.secrets
    rows = (
        select(JobExecution.id, JobExecution.error_message, JobExecution.result)
        .where(JobExecution.started_at >= params.since)
        .order_by(JobExecution.id)
    )
    changed = 0

    def mask(row: Any) -> None:
        nonlocal changed
        error = None if row.error_message is None else scrub(row.error_message, secrets)
        result = scrub_json(row.result, secrets)
        if error == row.error_message and json.dumps(result) == json.dumps(row.result):
            return
        changed += 1
        if ctx.dry_run:
            return
        with ctx.session() as session, session.begin():
            session.execute(
                update(JobExecution)
                .where(JobExecution.id == row.id)
                .values(error_message=error, result=result)
            )

    summary = ctx.batches(rows, size=params.batch_size, limit=params.limit).each(mask)
    summary["changed" if not ctx.dry_run else "would_change"] = changed
    ctx.logger.info(
        "%s %d of %d rows", "would mask" if ctx.dry_run else "masked", changed, summary["processed"]
    )
    return summary
