"""Claim, record and take over runs: all the lock SQL, and no cron math.

A claim is one short transaction on the job's own row::

    SELECT name FROM job WHERE name = ... FOR UPDATE [SKIP LOCKED]
    SELECT ... FROM job_execution (its RUNNING runs, its runs for this instant)
    (UPDATE an abandoned RUNNING run to FAILURE)
    (SELECT the upstream runs for the instant, when the job runs after others)
    (the job's pre-check, inside a savepoint)
    INSERT ... RUNNING ... RETURNING id
    COMMIT

The body then runs outside any transaction, and `finish_run` writes SUCCESS or
FAILURE in one autocommit statement guarded by ``status = 'RUNNING'`` on the
run's own id, so a run that was taken over is never brought back by a late finish.

The statements are built once, at import: on the hot path SQLAlchemy only looks
them up in its compiled cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Interval, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import Database
from app.models import JobExecution, JobRow, RunStatus

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 4000


@dataclass(frozen=True)
class Claim:
    """A run this worker owns: its id is the fencing token for every later write."""

    run_id: int
    job_name: str
    scheduled_for: datetime
    trigger: str
    attempt: int
    worker_id: str
    started_at: datetime


@dataclass(frozen=True)
class Skip:
    """The instant needs no run from this worker: already handled, or the job declined."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """Not yet: an upstream job has not finished this instant. Try again later in the tick."""

    reason: str


@dataclass(frozen=True)
class PreCheckFailed:
    """The job's pre-check raised: the run was recorded FAILURE without starting."""

    run_id: int
    error: str


ClaimResult = Claim | Skip | Wait | PreCheckFailed | None
"""None means another worker holds the job's lock row right now."""

PreCheckFn = Callable[[Session], str | None]

_run = JobExecution

_LOCK = select(JobRow.name).where(JobRow.name == bindparam("job_name"))
_LOCK_OR_SKIP = _LOCK.with_for_update(skip_locked=True)
_LOCK_OR_WAIT = _LOCK.with_for_update()

# A separate statement from the lock on purpose: under READ COMMITTED each
# statement takes a new snapshot, so this one sees what the previous lock holder
# committed. Joined into the locking statement, a claim that waited for the lock
# would read the old snapshot and start a run that had already happened.
_STATE = select(
    _run.id,
    _run.job_name,
    _run.status,
    _run.scheduled_for,
    _run.worker_id,
    _run.heartbeat_at,
    (_run.heartbeat_at < func.now() - bindparam("stale_after", type_=Interval())).label("stale"),
).where(
    _run.job_name == bindparam("job_name"),
    or_(_run.status == RunStatus.RUNNING, _run.scheduled_for == bindparam("scheduled_for")),
)

_ABANDON = (
    update(_run)
    .where(_run.id == bindparam("run_id"), _run.status == RunStatus.RUNNING)
    .values(status=RunStatus.FAILURE, completed_at=func.now(), error_message=bindparam("error"))
)

# Oldest first, so each upstream's latest attempt is the one kept.
_UPSTREAMS = (
    select(_run.job_name, _run.status, _run.error_message)
    .where(
        _run.job_name.in_(bindparam("upstreams", expanding=True)),
        _run.scheduled_for == bindparam("scheduled_for"),
    )
    .order_by(_run.id)
)

_INSERT = insert(_run).returning(_run.id, _run.started_at)

_FINISH = (
    update(_run)
    .where(_run.id == bindparam("run_id"), _run.status == RunStatus.RUNNING)
    .values(
        status=bindparam("new_status"),
        completed_at=func.now(),
        result=bindparam("new_result", type_=_run.__table__.c.result.type),
        error_message=bindparam("new_error"),
    )
    .returning(_run.id)
)


def ensure_jobs(database: Database, names: Sequence[str]) -> None:
    """Create the lock row of each job, in its own committed transaction."""
    if not names:
        return
    with database.connection() as conn:
        conn.execute(pg_insert(JobRow).on_conflict_do_nothing(), [{"name": n} for n in names])


def claim_run(
    database: Database,
    *,
    job_name: str,
    scheduled_for: datetime,
    trigger: str,
    worker_id: str,
    stale_after_s: float,
    run_after: Sequence[str] = (),
    pre_check: PreCheckFn | None = None,
    wait_for_lock: bool = False,
) -> ClaimResult:
    """Try to start a run of `job_name` for `scheduled_for`.

    Returns the Claim, a Skip or Wait with its reason, or None when another worker
    holds the job's lock (only without `wait_for_lock`). A RUNNING run whose
    heartbeat is older than `stale_after_s` (database clock) is marked FAILURE.
    """
    new_run = _NewRun(job_name, scheduled_for, trigger, worker_id)
    try:
        with database.connection() as conn:
            lock = _LOCK_OR_WAIT if wait_for_lock else _LOCK_OR_SKIP
            if conn.execute(lock, {"job_name": job_name}).first() is None:
                return None
            runs = conn.execute(
                _STATE,
                {
                    "job_name": job_name,
                    "scheduled_for": scheduled_for,
                    "stale_after": timedelta(seconds=stale_after_s),
                },
            ).all()
            for row in runs:
                if row.status == RunStatus.RUNNING and row.stale:
                    _abandon(conn, row, worker_id)
            verdict: Skip | Wait | None = _existing_runs_verdict(runs, scheduled_for)
            if verdict is None and run_after:
                verdict = _upstream_verdict(conn, run_after, scheduled_for)
            if verdict is not None:
                return verdict
            if pre_check is not None:
                try:
                    reason = _run_pre_check(conn, pre_check)
                except Exception as exc:
                    error = f"pre-check raised {type(exc).__name__}: {exc}"
                    logger.error("pre-check of %s raised", job_name, exc_info=True)
                    failed = _insert_run(conn, new_run, error=error)
                    return PreCheckFailed(run_id=failed.id, error=error)
                if reason is not None:
                    return Skip(reason)
            created = _insert_run(conn, new_run)
            return Claim(
                run_id=created.id,
                job_name=job_name,
                scheduled_for=scheduled_for,
                trigger=trigger,
                attempt=1,
                worker_id=worker_id,
                started_at=created.started_at,
            )
    except IntegrityError as exc:
        # The partial unique indexes caught what the row lock should have prevented.
        logger.error(
            "claim of %s for %s refused by a database invariant: %s",
            job_name,
            scheduled_for.isoformat(),
            exc.orig,
            extra={"event": "claim_conflict", "job": job_name},
        )
        return None


def _abandon(conn: Connection, row: Any, worker_id: str) -> None:
    message = (
        f"abandoned: no heartbeat since {row.heartbeat_at.isoformat()} from worker "
        f"{row.worker_id}; taken over by {worker_id}"
    )
    conn.execute(_ABANDON, {"run_id": row.id, "error": message})
    logger.warning(
        "run %s of %s was abandoned by %s; marked FAILURE",
        row.id,
        row.job_name,
        row.worker_id,
        extra={
            "event": "run_abandoned",
            "job": row.job_name,
            "run_id": row.id,
            "scheduled_for": row.scheduled_for.isoformat(),
            "abandoned_by": row.worker_id,
        },
    )


def _existing_runs_verdict(runs: Sequence[Any], scheduled_for: datetime) -> Skip | None:
    """The built-in pre-check: one live run per job, one run per scheduled instant."""
    for row in runs:
        if row.status == RunStatus.RUNNING and not row.stale:
            if row.scheduled_for == scheduled_for:
                return Skip(f"already running as run {row.id} on {row.worker_id}")
            return Skip(
                f"previous run {row.id} (for {row.scheduled_for.isoformat()}) "
                f"is still running on {row.worker_id}"
            )
    for row in runs:
        if row.scheduled_for == scheduled_for:
            outcome = "abandoned" if row.status == RunStatus.RUNNING else str(row.status)
            return Skip(f"this instant already has run {row.id} ({outcome})")
    return None


def _upstream_verdict(
    conn: Connection, upstreams: Sequence[str], scheduled_for: datetime
) -> Skip | Wait | None:
    params = {"upstreams": list(upstreams), "scheduled_for": scheduled_for}
    outcomes = {row.job_name: row for row in conn.execute(_UPSTREAMS, params)}
    for upstream in upstreams:
        outcome = outcomes.get(upstream)
        if outcome is None or outcome.status == RunStatus.RUNNING:
            return Wait(f"waiting for {upstream} to finish this instant")
        if outcome.status != RunStatus.SUCCESS:
            detail = f": {outcome.error_message}" if outcome.error_message else ""
            return Skip(f"upstream {upstream} ended {outcome.status}{detail}")
    return None


def _run_pre_check(conn: Connection, pre_check: PreCheckFn) -> str | None:
    """Run the pre-check on a session inside a savepoint of the claim's transaction.

    An SQL error in the pre-check rolls back only the savepoint, so the claim can
    still record the failure.
    """
    with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
        return pre_check(session)


@dataclass(frozen=True)
class _NewRun:
    job_name: str
    scheduled_for: datetime
    trigger: str
    worker_id: str


def _insert_run(conn: Connection, run: _NewRun, *, error: str | None = None) -> Any:
    """Insert RUNNING, or FAILURE at once when `error` is given; return (id, started_at)."""
    values: dict[str, Any] = {
        "job_name": run.job_name,
        "status": RunStatus.RUNNING,
        "scheduled_for": run.scheduled_for,
        "trigger": run.trigger,
        "attempt": 1,
        "worker_id": run.worker_id,
    }
    if error is not None:
        values |= {"status": RunStatus.FAILURE, "error_message": _truncate(error)}
        return conn.execute(_INSERT.values(completed_at=func.now()), values).one()
    return conn.execute(_INSERT, values).one()


def _truncate(error: str | None) -> str | None:
    if error is not None and len(error) > MAX_ERROR_LENGTH:
        return error[: MAX_ERROR_LENGTH - 1] + "…"
    return error


def finish_run(
    database: Database,
    claim: Claim,
    status: RunStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Record the run's outcome; False when the run is no longer ours (taken over)."""
    try:
        landed = _finish(database, claim.run_id, status, result=result, error=error)
    except IntegrityError:
        # Only reachable if the lock was bypassed: the instant already has a SUCCESS.
        logger.error(
            "run %s of %s would be a second SUCCESS for %s; recorded FAILURE instead",
            claim.run_id,
            claim.job_name,
            claim.scheduled_for.isoformat(),
            extra={"event": "run_duplicate", "job": claim.job_name, "run_id": claim.run_id},
        )
        duplicate = "duplicate: this instant already has a SUCCESS run"
        _finish(database, claim.run_id, RunStatus.FAILURE, error=duplicate)
        return False
    if not landed:
        logger.error(
            "run %s of %s finished %s after it was taken over; the outcome was not recorded",
            claim.run_id,
            claim.job_name,
            status,
            extra={
                "event": "run_fenced",
                "job": claim.job_name,
                "run_id": claim.run_id,
                "status": str(status),
            },
        )
    return landed


def _finish(
    database: Database,
    run_id: int,
    status: RunStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    params = {
        "run_id": run_id,
        "new_status": status,
        "new_result": result,
        "new_error": _truncate(error),
    }
    with database.autocommit() as conn:
        return conn.execute(_FINISH, params).first() is not None
