"""Running a claimed run: prepare, run the body, conclude.

The claim decided that this worker runs the instant (`app.runtime.runner`).
Here the body runs under its lease and its timeout (`prepare`, `_run_body`),
and `conclude` turns how it ended into the outcome to store, finishes the run
(`app.runtime.finish`) and observes it (`app.ops.observe`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from app.config import Settings
from app.core.claims import Claim
from app.core.job import Job
from app.core.outcomes import Outcome, RunOutcome, RunStatus, checked_result, retry_delay_s
from app.core.params import model_of
from app.core.redaction import scrub, scrub_json
from app.core.stops import RunInterrupted, StopNow, describe
from app.errors import DatabaseError
from app.ops import metrics
from app.ops.logs import job_scope, run_scope
from app.ops.observe import observe_outcome
from app.runtime.context import RunContext
from app.runtime.finish import close_transaction, record_outcome
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat, Lease
from app.store.facade import Store

logger = logging.getLogger(__name__)


@dataclass
class Execution:
    """One claimed run while it executes: what its body, its lease and its finish share."""

    store: Store
    job: Job
    claim: Claim
    settings: Settings
    heartbeat: Heartbeat
    lease: Lease
    fields: dict[str, Any]
    transaction: Connection | None = None

    def context(self) -> RunContext:
        """What the body is handed."""
        return RunContext(
            job_name=self.job.name,
            run_id=self.claim.run_id,
            scheduled_for=self.claim.scheduled_for,
            trigger=self.claim.trigger,
            attempt=self.claim.attempt,
            settings=self.settings,
            logger=logging.getLogger(f"cronlock.job.{self.job.name}"),
            database=self.store.database,
            cancelled=self.lease.cancelled,
            timeout_s=self.job.timeout_s,
            transaction=self.transaction,
            lease_lost=lambda: self.lease.lost,
            params=model_of(self.job.params, self.claim.params),
            dry_run=self.claim.dry_run,
        )


def execute(
    store: Store,
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
    Every line logged meanwhile carries the job's name.
    """
    scope = run_scope(claim.run_id, claim.scheduled_for.isoformat(), claim.attempt)
    with job_scope(job.name), scope, alarm.protected():
        return _execute(
            store, job, claim, settings, expires_at=expires_at, alarm=alarm, heartbeat=heartbeat
        )


def _execute(
    store: Store,
    job: Job,
    claim: Claim,
    settings: Settings,
    *,
    expires_at: datetime | None,
    alarm: Alarm,
    heartbeat: Heartbeat | None,
) -> RunOutcome:
    own_heartbeat = heartbeat is None
    heartbeat = heartbeat or Heartbeat(
        store, interval_s=settings.heartbeat_interval_s, stale_after_s=settings.stale_threshold_s
    )
    run = Execution(
        store,
        job,
        claim,
        settings,
        heartbeat,
        heartbeat.lease(claim.run_id, job.name, timeout_s=job.timeout_s),
        fields=_fields(job, claim),
    )
    logger.info(
        "started run %s for %s (attempt %d)",
        claim.run_id,
        claim.scheduled_for.isoformat(),
        claim.attempt,
        extra={"event": "run_started", **run.fields},
    )
    started = time.perf_counter()
    try:
        with metrics.running(job.name), _interrupts_recorded(run):
            ending = _prepare_and_run(run, alarm)
    finally:
        if own_heartbeat:
            heartbeat.close()
    return conclude(run, ending, (time.perf_counter() - started) * 1000, expires_at=expires_at)


def _fields(job: Job, claim: Claim) -> dict[str, Any]:
    """The run's fields on every log line about it."""
    return {
        "job": job.name,
        "scheduled_for": claim.scheduled_for.isoformat(),
        "run_id": claim.run_id,
        "attempt": claim.attempt,
        "trigger": claim.trigger,
        "worker_id": claim.worker_id,
    }


def _prepare_and_run(run: Execution, alarm: Alarm) -> Outcome:
    """Open the run's transaction (transactional jobs), then run the body under its lease."""
    with run.heartbeat.track(run.lease):
        try:
            if run.job.transactional:
                run.transaction = run.store.open_run_transaction(timeout_s=run.job.timeout_s)
        except DatabaseError as exc:
            # The run is committed RUNNING, so it must end FAILURE, not linger.
            return Outcome(RunStatus.FAILURE, error=f"could not begin the run: {exc.message}")
        context = run.context()
        run.heartbeat.body_started(run.lease)
        try:
            return _run_body(run.job, context, alarm)
        finally:
            context.end_dry_run()
            if run.claim.dry_run and run.transaction is not None:
                # A dry run's transactional writes never commit: its outcome is recorded
                # on its own.
                close_transaction(run.transaction)
                run.transaction = None


@contextmanager
def _interrupts_recorded(run: Execution) -> Iterator[None]:
    """A stop that interrupts the run (StopNow, say): record FAILURE, then let it go on."""
    try:
        yield
    except BaseException as exc:
        close_transaction(run.transaction)
        reason = (
            exc.reason
            if isinstance(exc, RunInterrupted | StopNow)
            else f"interrupted: {type(exc).__name__}"
        )
        interrupted = Outcome(RunStatus.FAILURE, error=scrub(reason, run.settings.secrets))
        record_outcome(
            run.store,
            None,
            run.claim,
            run.settings,
            interrupted,
            delay=None,
            expires_at=None,
            alive=run.heartbeat.alive,
        )
        raise


def _run_body(job: Job, context: RunContext, alarm: Alarm) -> Outcome:
    """Run the body under its timeout. Whatever it raises is its outcome, except StopNow."""
    try:
        if job.timeout_s is not None:
            alarm.arm(job.timeout_s, f"timed out after {job.timeout_s:g}s")
        with alarm.body():
            value = job.body(context)
        alarm.disarm()
        swallowed = alarm.take_fired()
        if swallowed is not None:
            return Outcome(RunStatus.FAILURE, error=f"{swallowed}; the body caught it and returned")
        return Outcome(RunStatus.SUCCESS, result=checked_result(value))
    except RunInterrupted as exc:
        return Outcome(RunStatus.FAILURE, error=exc.reason)
    except StopNow:
        raise
    except BaseException as exc:
        # A timeout the body turned into another error is still the timeout.
        interrupted = alarm.take_fired()
        logger.error(
            "run %s raised %s",
            context.run_id,
            type(exc).__name__,
            exc_info=True,
            extra={"event": "run_raised", "job": job.name, "run_id": context.run_id},
        )
        if interrupted is not None:
            return Outcome(RunStatus.FAILURE, error=interrupted)
        return Outcome(RunStatus.FAILURE, error=_ended_by(exc))
    finally:
        alarm.disarm()


def _ended_by(exc: BaseException) -> str:
    """The stored error of a body that raised: `Type: message`, or `exited: SystemExit(0)`."""
    if isinstance(exc, Exception):
        return describe(exc)
    try:
        return f"exited: {exc!r}"
    except Exception:
        return f"exited: {type(exc).__name__}"


def conclude(
    run: Execution, ending: Outcome, duration_ms: float, *, expires_at: datetime | None
) -> RunOutcome:
    """Turn how the body ended into the outcome to store; finish the run and observe it."""
    # Errors and results are stored and shown by `cronlock history`: no secret goes with them.
    secrets = run.settings.secrets
    if ending.error is not None or ending.result is not None:
        error = None if ending.error is None else scrub(ending.error, secrets)
        ending = Outcome(ending.status, scrub_json(ending.result, secrets), error)
    lost = run.lease.lost
    if lost and ending.status == RunStatus.SUCCESS:
        ending = Outcome(RunStatus.FAILURE, error=f"lease lost: {run.lease.lost_reason}")
    failed = ending.status == RunStatus.FAILURE
    delay = retry_delay_s(run.job, run.claim.attempt) if failed and not lost else None
    ending, finished = record_outcome(
        run.store,
        run.transaction,
        run.claim,
        run.settings,
        ending,
        delay=delay,
        expires_at=expires_at,
        alive=run.heartbeat.alive,
    )
    if finished.took_ms is not None:
        duration_ms = finished.took_ms  # the table's figure, as `history` shows it
    observe_outcome(
        run.store,
        run.settings,
        run.claim,
        ending,
        duration_ms=duration_ms,
        finished=finished,
        fields=run.fields,
    )
    return RunOutcome(
        run.claim.run_id,
        ending.status,
        duration_ms,
        ending.error,
        finished.landed,
        delay if finished.retry_at is not None else None,
    )
