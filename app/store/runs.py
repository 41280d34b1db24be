"""Everything written about a run after its claim: heartbeats, outcomes, missed instants.

Every write to a RUNNING run is guarded by ``id = <run> AND status = 'RUNNING'``:
the run id is the fencing token. Once another worker has declared the run
abandoned, a late heartbeat or finish from the old owner lands nowhere.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    DateTime,
    Float,
    Interval,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from app.core.outcomes import Outcome, RunStatus, Trigger
from app.core.planning import Missed
from app.store.database import Database, limit_waits
from app.store.driver import DriverConnection
from app.store.models import JobExecution, JobRow
from app.store.statements import compile_statement

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 4000

_run = JobExecution
_delay = bindparam("retry_delay_s", type_=Float())
_expires = bindparam("expires_at", type_=DateTime(timezone=True))
# clock_timestamp(), not now(): a transactional run finishes inside its body's
# transaction, whose now() is when the body started.
_retry_at = func.clock_timestamp() + _delay * literal_column("interval '1 second'", Interval())

_FINISH = compile_statement(
    update(_run)
    .where(_run.id == bindparam("run_id"), _run.status == RunStatus.RUNNING)
    .values(
        status=bindparam("new_status"),
        completed_at=func.clock_timestamp(),
        result=bindparam("new_result", type_=_run.__table__.c.result.type),
        error_message=bindparam("new_error"),
        # A retry is only worth scheduling before the job's next instant.
        retry_at=case((_retry_at < _expires, _retry_at), else_=None),
    )
    # How long the run took, start to outcome, by the database clock: the one figure
    # the log line, the metric and `cronlock history` all show.
    .returning(
        _run.id,
        _run.retry_at,
        (func.extract("epoch", _run.completed_at - _run.started_at) * 1000).label("took_ms"),
    )
)

_HEARTBEAT = (
    update(_run)
    .where(_run.id == bindparam("run_id"), _run.status == RunStatus.RUNNING)
    .values(heartbeat_at=func.now())
    .returning(_run.id)
)

_stale = _run.heartbeat_at < func.now() - bindparam("stale_after", type_=Interval())
_PENDING_RETRIES = select(
    _run.job_name,
    _run.scheduled_for,
    # How long until it is due, by the database clock: the worker adds it to its own.
    func.coalesce(func.extract("epoch", _run.retry_at - func.now()), 0).label("wait_s"),
    func.coalesce(_run.retry_at <= func.now(), True).label("due"),
).where(
    or_(
        _run.retry_at.is_not(None),
        # An abandoned run not yet marked: the claim of its retry will mark it.
        (_run.status == RunStatus.RUNNING) & _stale,
    )
)


def stored_error(error: str | None) -> str | None:
    """The error as stored: capped (the log line keeps the whole text), storable as text.

    An exception's message can hold NUL and lone surrogates; PostgreSQL's text
    cannot: they are stored as backslash escapes.
    """
    if error is None:
        return None
    # Lone surrogates (undecodable bytes in a message) cannot be sent as UTF-8.
    error = error.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
    if len(error) > MAX_ERROR_LENGTH:
        return error[: MAX_ERROR_LENGTH - 1] + "…"
    return error


@dataclass(frozen=True)
class Finished:
    """What a finish write did: landed (the run was still ours) and any retry it set."""

    landed: bool
    retry_at: datetime | None = None
    took_ms: float | None = None  # start to outcome, database clock; None when not landed


def finish_on(
    conn: DriverConnection,
    run_id: int,
    outcome: Outcome,
    *,
    retry_delay_s: float | None = None,
    expires_at: datetime | None = None,
) -> Finished:
    """Record `outcome` on `conn` (inside the caller's transaction, if any); fenced by run id.

    With `retry_delay_s`, a FAILURE also gets retry_at = now() + delay, unless that
    falls at or after `expires_at` (the job's next instant).
    """
    params = {
        "run_id": run_id,
        "new_status": outcome.status,
        "new_result": None if outcome.result is None else Jsonb(outcome.result),
        "new_error": stored_error(outcome.error),
        "retry_delay_s": retry_delay_s,
        "expires_at": expires_at,
    }
    row = conn.fetch_one(_FINISH, params)
    return Finished(False) if row is None else Finished(True, row.retry_at, float(row.took_ms))


def finish_run(
    database: Database,
    run_id: int,
    outcome: Outcome,
    *,
    retry_delay_s: float | None = None,
    expires_at: datetime | None = None,
) -> Finished:
    """Record `outcome` in one autocommit statement (see `finish_on`)."""
    try:
        with database.driver(autocommit=True) as conn:
            return finish_on(
                conn, run_id, outcome, retry_delay_s=retry_delay_s, expires_at=expires_at
            )
    except IntegrityError:
        with database.driver(autocommit=True) as conn:
            finish_on(conn, run_id, duplicate_success(run_id))
        return Finished(False)


def duplicate_success(run_id: int) -> Outcome:
    """What to record instead of a second SUCCESS for an instant; logs it.

    Only reachable if the lock was bypassed (a hand-written row, say): the
    database's one-success-per-instant index refused the write.
    """
    logger.error(
        "run %s would be a second SUCCESS for its instant; recorded FAILURE instead",
        run_id,
        extra={"event": "run_duplicate", "run_id": run_id},
    )
    return Outcome(RunStatus.FAILURE, error="duplicate: this instant already has a SUCCESS run")


def renew_lease(database: Database, run_id: int, *, timeout_s: float) -> bool:
    """Move the run's heartbeat to now() (database clock); False once it is no longer ours.

    Waits at most `timeout_s` for the row or the server, so one stuck renewal does
    not hold up the next: the heartbeat thread serves every run of its worker.
    """
    with database.connection() as conn:
        limit_waits(conn, timeout_s, locks=True)
        return conn.execute(_HEARTBEAT, {"run_id": run_id}).first() is not None


def record_missed(database: Database, missed: Sequence[Missed]) -> Counter[str]:
    """Record MISSED runs in one statement; count the rows written per job.

    Instants that have a run are left alone. One statement for every job keeps a
    worker that fell behind from spending a transaction on each instant it lost.
    """
    if not missed:
        return Counter()
    rows = [
        {
            "job_name": m.job_name,
            "status": RunStatus.MISSED,
            "scheduled_for": m.scheduled_for,
            "trigger": Trigger.SCHEDULE,
            "attempt": 1,
            "worker_id": "-",
            "error_message": stored_error(m.reason),
        }
        # One order for every worker: each row also adds to its job's day counts, and
        # two workers recording the same instants lock those rows in the same order.
        for m in sorted(missed, key=lambda m: (m.job_name, m.scheduled_for))
    ]
    statement = (
        pg_insert(_run)
        .values(completed_at=func.now())
        .on_conflict_do_nothing(constraint="uq_job_execution_instant_attempt")
        .returning(_run.job_name)
    )
    with database.connection() as conn:
        return Counter(row.job_name for row in conn.execute(statement, rows))


def pending_retries(database: Database, *, stale_after_s: float) -> list[Any]:
    """Runs with a retry still to come: job_name, scheduled_for, wait_s, due.

    Failed runs with retry_at, and RUNNING runs whose heartbeat is stale (their
    worker died; the retry's claim marks them abandoned). `due` is judged by the
    database clock, as the claim will judge it.
    """
    params = {"stale_after": timedelta(seconds=stale_after_s)}
    with database.autocommit() as conn:
        return list(conn.execute(_PENDING_RETRIES, params).all())


def drop_retries(
    database: Database, instants: Sequence[tuple[str, datetime]]
) -> list[tuple[str, datetime]]:
    """Clear the retries of (job, instant) pairs whose next instant came first.

    Left set, a retry that can no longer run would be read by every scan for good.
    Returns the pairs this call cleared (another replica may have cleared the rest).
    """
    if not instants:
        return []
    statement = (
        update(_run)
        .where(tuple_(_run.job_name, _run.scheduled_for).in_(instants))
        .where(_run.retry_at.is_not(None))
        .values(retry_at=None)
        .returning(_run.job_name, _run.scheduled_for)
    )
    with database.connection() as conn:
        return [(row.job_name, row.scheduled_for) for row in conn.execute(statement)]


def last_scheduled_instants(database: Database, names: Sequence[str]) -> dict[str, datetime]:
    """Where each job's catch-up starts: the latest instant it has a scheduled run for, or,
    for a job that has none yet, when it was registered (its row was created)."""
    latest = (
        select(func.max(_run.scheduled_for))
        .where(_run.job_name == JobRow.name, _run.trigger == Trigger.SCHEDULE)
        .scalar_subquery()
    )
    query = select(JobRow.name, func.coalesce(latest, JobRow.created_at)).where(
        JobRow.name.in_(list(names))
    )
    with database.autocommit() as conn:
        return {name: instant for name, instant in conn.execute(query) if instant is not None}


@dataclass(frozen=True)
class Takeover:
    """What became of a run whose late write was fenced off."""

    status: str
    error_message: str | None
    current_run_id: int | None


def takeover_of(database: Database, run_id: int, job_name: str) -> Takeover | None:
    """The fenced run's recorded outcome, and the newest run of its job since."""
    own = select(_run.status, _run.error_message).where(_run.id == run_id)
    newest = select(func.max(_run.id)).where(_run.job_name == job_name, _run.id > run_id)
    with database.autocommit() as conn:
        row = conn.execute(own).first()
        current = conn.execute(newest).scalar()
    return None if row is None else Takeover(row.status, row.error_message, current)


def finish_held(
    database: Database, run_id: int, sent: Sequence[Outcome]
) -> tuple[Outcome, Finished] | None:
    """Which of `sent`, finishes whose answers were lost, the run holds: that one landed.

    Only the run's own worker writes SUCCESS or its own error to it; a takeover
    writes FAILURE with an `abandoned: ...` error, which matches none of them.
    """
    held = select(_run.status, _run.error_message, _run.retry_at).where(_run.id == run_id)
    with database.autocommit() as conn:
        row = conn.execute(held).first()
    if row is None:
        return None
    for outcome in sent:
        if (row.status, row.error_message) == (outcome.status, stored_error(outcome.error)):
            return outcome, Finished(True, row.retry_at)
    return None


def database_now(database: Database) -> datetime:
    """The database clock, for comparing with the worker's."""
    with database.autocommit() as conn:
        moment: datetime = conn.execute(select(func.now())).scalar_one()
    return moment
