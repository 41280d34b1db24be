"""Claim a (job, instant): the lock, the built-in pre-check, takeover of abandoned runs.

A claim is one short transaction on the job's own row::

    SELECT name FROM job WHERE name = ... FOR UPDATE [SKIP LOCKED]
    SELECT ... FROM job_execution (its RUNNING runs, its runs for this instant)
    (UPDATE an abandoned RUNNING run to FAILURE, then read again)
    (SELECT the upstream runs for the instant, when the job runs after others)
    (the job's pre-check, inside a savepoint)
    INSERT ... RUNNING (or SKIPPED, with the reason) ... RETURNING id
    COMMIT

No cron math here: the caller says which instant, and until when it is worth
running (`expires_at`, the job's next instant). What the runs read under the lock
mean, the verdict, is `app.core.claims.decide`. The statements a no-op run sends
are compiled once, at import (`app.store.statements`), and sent by psycopg on a pooled
connection (`app.store.driver`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.claims import (
    Claim,
    ClaimRequest,
    ClaimResult,
    ClaimUnacknowledged,
    NextClaim,
    PreCheckFailed,
    PreCheckFn,
    Skip,
    Wait,
    decide,
    pause_reason,
    settled_reason,
)
from app.core.outcomes import RunStatus, Trigger
from app.core.stops import StopNow, describe
from app.errors import DatabaseError
from app.store import claim_statements as sql
from app.store.database import Database
from app.store.driver import DriverConnection
from app.store.models import JobRow
from app.store.runs import stored_error

logger = logging.getLogger(__name__)


def ensure_jobs(database: Database, names: Sequence[str]) -> None:
    """Create the lock row of each job, in its own committed transaction."""
    if not names:
        return
    with database.connection() as conn:
        conn.execute(pg_insert(JobRow).on_conflict_do_nothing(), [{"name": n} for n in names])


def claim_run(database: Database, request: ClaimRequest) -> ClaimResult:
    """Try to start a run of the request's job for its instant.

    Returns the Claim, a Skip or Wait with its reason, or None when another worker
    holds the job's lock (only without `wait_for_lock`). A RUNNING run whose
    heartbeat is older than `stale_after_s` (database clock) is marked FAILURE.
    """
    claimed: ClaimResult = None
    try:
        with database.driver() as conn:
            lock = sql.LOCK_OR_WAIT if request.wait_for_lock else sql.LOCK_OR_SKIP
            locked = conn.fetch_one(lock, {"job_name": request.job_name})
            if locked is None:
                return None
            claimed = _claim_locked(conn, request, locked)
    except IntegrityError as exc:
        _log_refusal(request, exc)
        return None
    except DatabaseError as exc:
        if isinstance(claimed, Claim):  # the COMMIT went unanswered
            raise ClaimUnacknowledged(request, claimed, exc) from exc
        raise
    return claimed


def claim_next(database: Database, requests: Sequence[ClaimRequest]) -> NextClaim:
    """Claim the first request, in order, that is not settled and whose job is free.

    One statement skips what other replicas have settled and steps over the jobs
    they hold (SKIP LOCKED), so replicas spread over a tick instead of each asking
    for every lock. The claim then goes on as `claim_run`'s, with the state read
    by a statement of its own, after the lock.
    """
    found = NextClaim({})
    if not requests:
        return found
    params = {
        "job_names": [r.job_name for r in requests],
        "instants": [r.scheduled_for for r in requests],
        "stale_after": timedelta(seconds=min(r.stale_after_s for r in requests)),
    }
    try:
        with database.driver() as conn:
            rows = conn.fetch_all(sql.NEXT, params)
            settled = {
                row.position - 1: Skip(
                    settled_reason(row.settled_status, row.settled_run, row.settled_worker)
                )
                for row in rows
                if row.settled_run is not None
            }
            locked = next((row for row in rows if row.locked), None)
            position = None if locked is None else locked.position - 1
            looked_at = len(requests) if position is None else position
            held = [i for i in range(looked_at) if i not in settled]
            running = any(row.settled_status == RunStatus.RUNNING for row in rows)
            found = NextClaim(settled, held, position, running_elsewhere=running)
            if locked is None:
                return found
            request = requests[locked.position - 1]
            found = replace(found, result=_claim_locked(conn, request, locked))
    except IntegrityError as exc:
        _log_refusal(requests[found.position or 0], exc)
        return replace(found, result=None)  # nothing of the claim committed
    except DatabaseError as exc:
        if isinstance(found.result, Claim):  # the COMMIT went unanswered
            raise ClaimUnacknowledged(requests[found.position or 0], found.result, exc) from exc
        raise
    return found


def _log_refusal(request: ClaimRequest, exc: IntegrityError) -> None:
    """A unique index refused what the row lock should have prevented: say so, loudly."""
    logger.error(
        "claim of %s for %s refused by a database invariant: %s",
        request.job_name,
        request.scheduled_for.isoformat(),
        exc.orig,
        extra={"event": "claim_conflict", "job": request.job_name},
    )


def _claim_locked(conn: DriverConnection, request: ClaimRequest, locked: Any) -> ClaimResult:
    """The claim after the job's row is locked; `locked` holds its pause and alert state."""
    claimed = _decide_and_insert(conn, request, locked.paused_reason)
    if isinstance(claimed, Claim) and locked.alerted_at is not None:
        return replace(claimed, alert_open=True)
    return claimed


def _decide_and_insert(
    conn: DriverConnection, request: ClaimRequest, job_paused: str | None
) -> ClaimResult:
    all_paused, runs = _read_state(conn, request)
    stale = [r for r in runs if r.status == RunStatus.RUNNING and r.stale]
    if stale:
        for row in stale:
            _abandon(conn, row, request)
        all_paused, runs = _read_state(conn, request)
    paused = None if request.ignore_pause else pause_reason(job_paused, all_paused)
    decision = decide(runs, request)
    if isinstance(decision, Skip):
        return _record_skip(conn, request, decision, attempt=1)
    attempt, retried_run = decision
    if retried_run is not None:
        # Whatever happens next, this retry is used up.
        conn.sqlalchemy().execute(sql.CONSUME_RETRY, {"run_id": retried_run})
    verdict: Skip | Wait | None = None
    if paused is not None:
        verdict = Skip(paused, recorded=True, kind="paused")
    elif request.run_after:
        verdict = _upstream_verdict(conn, request.run_after, request.scheduled_for)
    if isinstance(verdict, Skip):
        return _record_skip(conn, request, verdict, attempt=attempt)
    if verdict is not None:
        return verdict
    if request.pre_check is not None:
        try:
            reason = _run_pre_check(conn, request.pre_check)
        except StopNow:
            raise
        except BaseException as exc:
            error = request.redact(f"pre-check raised {describe(exc)}")
            logger.error(
                "pre-check of %s raised",
                request.job_name,
                exc_info=True,
                extra={"event": "pre_check_raised", "job": request.job_name},
            )
            failed = _insert(conn, request, attempt, RunStatus.FAILURE, error)
            return PreCheckFailed(run_id=failed.id, error=error)
        if reason is not None:
            skip = Skip(reason, recorded=True, kind="pre_check")
            return _record_skip(conn, request, skip, attempt=attempt)
    created = _insert(conn, request, attempt, RunStatus.RUNNING)
    return Claim(
        run_id=created.id,
        job_name=request.job_name,
        scheduled_for=request.scheduled_for,
        trigger=request.trigger,
        attempt=attempt,
        worker_id=request.worker_id,
        started_at=created.started_at,
        params=request.params,
        dry_run=request.dry_run,
    )


def _read_state(conn: DriverConnection, request: ClaimRequest) -> tuple[str | None, list[Any]]:
    """`pause --all`'s reason (None when not paused), and the job's runs that matter."""
    params = {
        "job_name": request.job_name,
        "scheduled_for": request.scheduled_for,
        "stale_after": timedelta(seconds=request.stale_after_s),
    }
    rows = conn.fetch_all(sql.STATE, params)
    return rows[0].all_paused, [row for row in rows if row.id is not None]


def _abandon(conn: DriverConnection, row: Any, request: ClaimRequest) -> None:
    """Mark a run whose worker stopped renewing its lease FAILURE; retry it if allowed.

    The caller reads the state again afterwards, whether or not the run was still stale.
    """
    retry = row.scheduled_for == request.scheduled_for and row.attempt <= request.retries
    abandon_on(conn, row, by=request.worker_id, retry=retry, stale_after_s=request.stale_after_s)


def abandon_on(
    conn: DriverConnection, row: Any, *, by: str, retry: bool, stale_after_s: float
) -> bool:
    """Mark the stale RUNNING `row` FAILURE (abandoned), due again at once with `retry`.

    False when its worker renewed the lease meanwhile: the row's staleness is judged
    again when it is written, so a renewal that committed first wins.
    """
    message = (
        f"abandoned: no heartbeat since {row.heartbeat_at.isoformat()} from worker "
        f"{row.worker_id}; taken over by {by}"
    )
    params = {
        "run_id": row.id,
        "error": message,
        "retry": retry,
        "stale_after": timedelta(seconds=stale_after_s),
    }
    if conn.sqlalchemy().execute(sql.ABANDON, params).rowcount == 0:
        return False
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
    return True


@dataclass(frozen=True)
class StaleSweep:
    """What one sweep for abandoned runs did: the runs it closed, and how long until the
    next RUNNING run could go stale (None: nothing is RUNNING, so no sweep is needed)."""

    closed: list[Any]
    next_stale_in_s: float | None


def close_stale_runs(
    database: Database, *, stale_after_s: float, by: str, retry: Callable[[Any], bool]
) -> StaleSweep:
    """Close every RUNNING run whose heartbeat is stale, whichever job it belongs to.

    One indexed read of the RUNNING runs (few: at most one per job), then an UPDATE
    per stale one. `retry(row)` says whether its job wants the instant run again.
    """
    params = {"stale_after": timedelta(seconds=stale_after_s)}
    with database.driver() as conn:
        running = conn.fetch_all(sql.RUNNING_RUNS, params)
        stale = [row for row in running if row.stale]
        closed = [
            row
            for row in stale
            if abandon_on(conn, row, by=by, retry=retry(row), stale_after_s=stale_after_s)
        ]
    live = [float(row.stale_in_s) for row in running if not row.stale]
    return StaleSweep(closed, min(live) if live else None)


def _upstream_verdict(
    conn: DriverConnection, upstreams: Sequence[str], scheduled_for: datetime
) -> Skip | Wait | None:
    params = {"upstreams": list(upstreams), "scheduled_for": scheduled_for}
    outcomes = {row.job_name: row for row in conn.sqlalchemy().execute(sql.UPSTREAMS, params)}
    for upstream in upstreams:
        outcome = outcomes.get(upstream)
        if outcome is None or outcome.status == RunStatus.RUNNING:
            return Wait(f"waiting for {upstream} to finish this instant")
        if outcome.status != RunStatus.SUCCESS:
            detail = f": {outcome.error_message}" if outcome.error_message else ""
            reason = f"upstream {upstream} ended {outcome.status}{detail}"
            return Skip(reason, recorded=True, kind="upstream")
    return None


def _run_pre_check(conn: DriverConnection, pre_check: PreCheckFn) -> str | None:
    """Run the pre-check on a session inside a savepoint of the claim's transaction.

    An SQL error in the pre-check rolls back only the savepoint, so the claim can
    still record the failure.
    """
    with Session(bind=conn.sqlalchemy(), join_transaction_mode="create_savepoint") as session:
        return pre_check(session)


def _record_skip(
    conn: DriverConnection, request: ClaimRequest, skip: Skip, *, attempt: int
) -> Skip:
    """Write a SKIPPED row for a skip that is an outcome of this instant."""
    if not skip.recorded or request.trigger != Trigger.SCHEDULE:
        return Skip(skip.reason, kind=skip.kind)
    _insert(conn, request, attempt, RunStatus.SKIPPED, skip.reason)
    return skip


def _insert(
    conn: DriverConnection,
    request: ClaimRequest,
    attempt: int,
    status: RunStatus,
    error: str | None = None,
) -> Any:
    values: dict[str, Any] = {
        "job_name": request.job_name,
        "status": status,
        "scheduled_for": request.scheduled_for,
        "trigger": request.trigger,
        "attempt": attempt,
        "worker_id": request.worker_id,
        "params": None if request.params is None else Jsonb(request.params),
        "dry_run": request.dry_run,
        "requested_by": request.requested_by,
    }
    if status == RunStatus.RUNNING:
        return conn.fetch_one(sql.INSERT, values)
    return conn.fetch_one(sql.INSERT_DONE, {**values, "error_message": stored_error(error)})
