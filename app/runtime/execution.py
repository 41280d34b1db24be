"""Running a claimed run: its body under its lease and its timeout, then its outcome.

The claim decided that this worker runs the instant (`app.runtime.runner`); here the
body runs, its result is checked for what PostgreSQL can store, and how it
ended is recorded (`app.runtime.finish`) and counted.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from app.config import Settings
from app.core.claims import Claim
from app.core.job import Job, RunContext
from app.errors import DatabaseError
from app.ops import metrics
from app.ops.alerts import after_run
from app.ops.logs import scrub
from app.runtime.finish import close_transaction, log_outcome, record_outcome
from app.runtime.interrupts import Alarm, RunInterrupted
from app.runtime.lease import Heartbeat
from app.store.database import Database
from app.store.models import RunStatus
from app.store.runs import Outcome

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
    retry_in_s: float | None = None  # None: no retry; else due in this many seconds


def retry_delay_s(job: Job, attempt: int) -> float | None:
    """Exponential backoff with jitter before attempt + 1, or None when no retry is left."""
    if attempt > job.retries:
        return None
    jitter: float = random.uniform(0.5, 1.5)  # noqa: S311 - spreading retries, not secrets
    return float(job.retry_backoff_s * 2 ** (attempt - 1) * jitter)


def count_outcome(job_name: str, status: RunStatus, duration_ms: float) -> None:
    metrics.RUNS.labels(job_name=job_name, outcome=status.lower()).inc()
    metrics.DURATION.labels(job_name=job_name).observe(duration_ms / 1000)
    if status == RunStatus.SUCCESS:
        metrics.LAST_SUCCESS.labels(job_name=job_name).set(time.time())
        metrics.CONSECUTIVE_FAILURES.labels(job_name=job_name).set(0)
    else:
        metrics.LAST_FAILURE.labels(job_name=job_name).set(time.time())
        metrics.CONSECUTIVE_FAILURES.labels(job_name=job_name).inc()  # exact once alerts reads it


def _json_result(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"a job returns a dict or None, not {type(value).__name__}")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("the result holds NaN or Infinity, which JSON cannot store") from None
    if len(encoded) > MAX_RESULT_BYTES:
        raise ValueError(f"the result is {len(encoded)} bytes; keep it under {MAX_RESULT_BYTES}")
    decoded: dict[str, Any] = json.loads(encoded)
    if _holds_nul(decoded):
        raise ValueError("the result holds a NUL character, which PostgreSQL cannot store")
    return decoded


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def execute(
    database: Database,
    job: Job,
    claim: Claim,
    settings: Settings,
    *,
    expires_at: datetime | None = None,
    alarm: Alarm,
    heartbeat: Heartbeat | None = None,
) -> RunOutcome:
    """Run the body of a claimed run under its lease, and record SUCCESS or FAILURE.

    `heartbeat` is the worker's; without one, a heartbeat thread lives for this run.
    """
    fields = {
        "job": job.name,
        "scheduled_for": claim.scheduled_for.isoformat(),
        "run_id": claim.run_id,
        "attempt": claim.attempt,
        "trigger": claim.trigger,
        "worker_id": claim.worker_id,
    }
    logger.info(
        "started run %s for %s (attempt %d)",
        claim.run_id,
        claim.scheduled_for.isoformat(),
        claim.attempt,
        extra={"event": "run_started", **fields},
    )
    own_heartbeat = heartbeat is None
    heartbeat = heartbeat or Heartbeat(
        database,
        interval_s=settings.heartbeat_interval_s,
        stale_after_s=settings.stale_threshold_s,
    )
    lease = heartbeat.lease(claim.run_id, job.name)
    started = time.perf_counter()
    running = metrics.RUNNING.labels(job_name=job.name)
    running.set(1)
    transaction: Connection | None = None
    try:
        with heartbeat.track(lease):
            transaction = _open_transaction(database, job) if job.transactional else None
            context = RunContext(
                job_name=job.name,
                run_id=claim.run_id,
                scheduled_for=claim.scheduled_for,
                trigger=claim.trigger,
                attempt=claim.attempt,
                settings=settings,
                logger=logging.getLogger(f"cronlock.job.{job.name}"),
                database=database,
                cancelled=lease.cancelled,
                timeout_s=job.timeout_s,
                transaction=transaction,
                lease_lost=lambda: lease.lost,
            )
            ending = _run_body(job, context, alarm)
    except DatabaseError as exc:
        # Only opening the run's transaction gets here (the body's errors are its
        # outcome): the run is committed RUNNING, so it must end FAILURE, not linger.
        ending = Outcome(RunStatus.FAILURE, error=f"could not begin the run: {exc.message}")
    except BaseException as exc:
        # KeyboardInterrupt, SystemExit: record the run, then let the signal go on.
        close_transaction(transaction)
        interrupted = Outcome(RunStatus.FAILURE, error=scrub(_interrupted(exc), settings.secrets))
        record_outcome(
            database,
            None,
            claim,
            settings,
            interrupted,
            delay=None,
            expires_at=None,
            alive=heartbeat.alive,
        )
        raise
    finally:
        running.set(0)
        if own_heartbeat:
            heartbeat.close()
    duration_ms = (time.perf_counter() - started) * 1000
    if ending.error is not None:
        # Errors are stored and shown by `cronlock history`: no secret goes with them.
        ending = Outcome(ending.status, ending.result, scrub(ending.error, settings.secrets))
    if lease.lost and ending.status == RunStatus.SUCCESS:
        ending = Outcome(RunStatus.FAILURE, error=f"lease lost: {lease.lost_reason}")
    delay = retry_delay_s(job, claim.attempt) if ending.status == RunStatus.FAILURE else None
    if delay is not None and lease.lost:
        delay = None
    ending, finished = record_outcome(
        database,
        transaction,
        claim,
        settings,
        ending,
        delay=delay,
        expires_at=expires_at,
        alive=heartbeat.alive,
    )
    log_outcome(database, claim, ending, duration_ms=duration_ms, finished=finished, fields=fields)
    if finished.landed:
        count_outcome(job.name, ending.status, duration_ms)
        after_run(
            database,
            settings,
            job_name=job.name,
            status=ending.status,
            alert_open=claim.alert_open,
            worker_id=claim.worker_id,
        )
    return RunOutcome(
        claim.run_id,
        ending.status,
        duration_ms,
        ending.error,
        finished.landed,
        delay if finished.retry_at is not None else None,
    )


def _run_body(job: Job, context: RunContext, alarm: Alarm) -> Outcome:
    try:
        if job.timeout_s is not None:
            alarm.arm(job.timeout_s, f"timed out after {job.timeout_s:g}s")
        with alarm.body():
            value = job.body(context)
        alarm.disarm()
        return Outcome(RunStatus.SUCCESS, result=_json_result(value))
    except RunInterrupted as exc:
        return Outcome(RunStatus.FAILURE, error=exc.reason)
    except Exception as exc:
        logger.error(
            "run %s raised %s",
            context.run_id,
            type(exc).__name__,
            exc_info=True,
            extra={"event": "run_raised", "job": job.name, "run_id": context.run_id},
        )
        return Outcome(RunStatus.FAILURE, error=f"{type(exc).__name__}: {exc}")
    finally:
        alarm.disarm()


def _interrupted(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, RunInterrupted) else f"interrupted: {type(exc).__name__}"


def _open_transaction(database: Database, job: Job) -> Connection:
    """The run's transaction: the body's writes and its SUCCESS commit together."""
    with database.translated_errors():
        conn = database.engine.connect()
        try:
            conn.begin()
            if job.timeout_s is not None:
                milliseconds = str(max(int(job.timeout_s * 1000), 1))
                conn.execute(select(func.set_config("statement_timeout", milliseconds, True)))
        except BaseException:
            conn.close()
            raise
    return conn
