"""One attempt at one (job, instant): claim it, run the body, record the outcome.

Shared by the worker's tick and `cronlock run`, so a manual run goes through the
same lock and pre-checks as a scheduled one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.config import Settings
from app.db import Database
from app.errors import DatabaseError
from app.job import Job, PreCheckContext, RunContext
from app.lock import Claim, ClaimResult, PreCheckFailed, Skip, Wait, claim_run, finish_run
from app.logs import job_scope
from app.models import RunStatus

logger = logging.getLogger(__name__)

MAX_RESULT_BYTES = 64 * 1024


@dataclass(frozen=True)
class RunOutcome:
    """A run this worker claimed, and how it ended."""

    run_id: int
    status: RunStatus
    duration_ms: float
    error: str | None = None
    recorded: bool = True


AttemptResult = RunOutcome | Skip | Wait | None
"""None: another worker holds the job's lock; try again later."""


def _run_fields(job_name: str, scheduled_for: datetime, **more: Any) -> dict[str, Any]:
    return {"job": job_name, "scheduled_for": scheduled_for.isoformat(), **more}


def attempt_run(
    database: Database,
    job: Job,
    *,
    scheduled_for: datetime,
    trigger: str,
    settings: Settings,
    worker_id: str,
    run_after: Sequence[str] = (),
    wait_for_lock: bool = False,
) -> AttemptResult:
    """Claim `job` for `scheduled_for` and, if this worker wins, run it to an outcome."""
    with job_scope(job.name):
        pre_check = job.pre_check
        claimed: ClaimResult = claim_run(
            database,
            job_name=job.name,
            scheduled_for=scheduled_for,
            trigger=trigger,
            worker_id=worker_id,
            stale_after_s=settings.stale_threshold_s,
            run_after=run_after,
            pre_check=None
            if pre_check is None
            else lambda session: pre_check(
                PreCheckContext(
                    job_name=job.name,
                    scheduled_for=scheduled_for,
                    trigger=trigger,
                    session=session,
                    settings=settings,
                )
            ),
            wait_for_lock=wait_for_lock,
        )
        if isinstance(claimed, Skip):
            logger.info(
                "skipped %s: %s",
                scheduled_for.isoformat(),
                claimed.reason,
                extra={"event": "run_skipped", **_run_fields(job.name, scheduled_for)},
            )
            return claimed
        if isinstance(claimed, PreCheckFailed):
            return RunOutcome(claimed.run_id, RunStatus.FAILURE, 0.0, claimed.error)
        if isinstance(claimed, Claim):
            return execute(database, job, claimed, settings)
        return claimed


def _json_result(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"a job returns a dict or None, not {type(value).__name__}")
    encoded = json.dumps(value)
    if len(encoded) > MAX_RESULT_BYTES:
        raise ValueError(f"the result is {len(encoded)} bytes; keep it under {MAX_RESULT_BYTES}")
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def execute(database: Database, job: Job, claim: Claim, settings: Settings) -> RunOutcome:
    """Run the body of a claimed run and record SUCCESS or FAILURE, whatever happens."""
    fields = _run_fields(
        job.name,
        claim.scheduled_for,
        run_id=claim.run_id,
        attempt=claim.attempt,
        trigger=claim.trigger,
        worker_id=claim.worker_id,
    )
    logger.info(
        "started run %s for %s",
        claim.run_id,
        claim.scheduled_for.isoformat(),
        extra={"event": "run_started", **fields},
    )
    context = RunContext(
        job_name=job.name,
        run_id=claim.run_id,
        scheduled_for=claim.scheduled_for,
        trigger=claim.trigger,
        attempt=claim.attempt,
        settings=settings,
        logger=logging.getLogger(f"cronlock.job.{job.name}"),
        database=database,
    )
    started = time.perf_counter()
    try:
        result = _json_result(job.body(context))
    except Exception as exc:
        duration_ms = (time.perf_counter() - started) * 1000
        error = f"{type(exc).__name__}: {exc}"
        logger.error(
            "run %s failed after %.0f ms: %s",
            claim.run_id,
            duration_ms,
            error,
            exc_info=True,
            extra={"event": "run_failed", "duration_ms": duration_ms, "error": error, **fields},
        )
        recorded = _record(database, claim, RunStatus.FAILURE, error=error)
        return RunOutcome(claim.run_id, RunStatus.FAILURE, duration_ms, error, recorded)
    except BaseException as exc:
        # KeyboardInterrupt or SystemExit: record the run, then let the signal go on.
        _record(database, claim, RunStatus.FAILURE, error=f"interrupted: {type(exc).__name__}")
        raise
    duration_ms = (time.perf_counter() - started) * 1000
    recorded = _record(database, claim, RunStatus.SUCCESS, result=result)
    logger.info(
        "run %s succeeded in %.0f ms%s",
        claim.run_id,
        duration_ms,
        f": {json.dumps(result)}" if result else "",
        extra={"event": "run_succeeded", "duration_ms": duration_ms, **fields},
    )
    return RunOutcome(claim.run_id, RunStatus.SUCCESS, duration_ms, None, recorded)


def _record(
    database: Database,
    claim: Claim,
    status: RunStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    try:
        return finish_run(database, claim, status, result=result, error=error)
    except DatabaseError as exc:
        logger.error(
            "could not record run %s as %s: %s; it stays RUNNING until another claim "
            "marks it abandoned",
            claim.run_id,
            status,
            exc.message,
            extra={"event": "run_record_failed", "job": claim.job_name, "run_id": claim.run_id},
        )
        return False
