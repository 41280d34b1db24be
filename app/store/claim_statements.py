"""The claim's statements: written in SQLAlchemy Core, the hot ones compiled once at import.

`app.store.claiming` sends them; why each is shaped as it is, is said beside it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnClause,
    DateTime,
    Interval,
    Text,
    and_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal_column,
    null,
    or_,
    outerjoin,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from app.core.outcomes import RunStatus
from app.store.models import GlobalPause, JobExecution, JobRow
from app.store.statements import compile_statement

_run = JobExecution
_stale_heartbeat = _run.heartbeat_at < func.now() - bindparam("stale_after", type_=Interval())

# The lock also reads whether the job is paused: no extra query. A claim that waited
# for the row reads the row as the pause left it (READ COMMITTED re-reads a locked
# row that changed), so once `cronlock pause` returns, no claim misses it.
_LOCK = select(JobRow.name, JobRow.paused_reason, JobRow.alerted_at).where(
    JobRow.name == bindparam("job_name")
)
LOCK_OR_SKIP = compile_statement(_LOCK.with_for_update(of=JobRow, skip_locked=True))
LOCK_OR_WAIT = compile_statement(_LOCK.with_for_update(of=JobRow))

# A separate statement from the lock on purpose: under READ COMMITTED each
# statement takes a new snapshot, so this one sees what the previous lock holder
# committed. Joined into the locking statement, a claim that waited for the lock
# would read the old snapshot and start a run that had already happened.
# `pause --all` is read here for the same reason: it takes every job's row before
# it commits, so a claim either finished before it, or reads it after the lock.
# One row at least (the pause), then one per run found.
_ALL_PAUSED = select(GlobalPause.paused_reason).where(GlobalPause.id.is_(True)).scalar_subquery()
_ONE_ROW = select(literal_column("1").label("one")).subquery("one")
STATE = compile_statement(
    select(
        _ALL_PAUSED.label("all_paused"),
        _run.id,
        _run.job_name,
        _run.status,
        _run.scheduled_for,
        _run.attempt,
        _run.worker_id,
        _run.heartbeat_at,
        _stale_heartbeat.label("stale"),
        (_run.retry_at <= func.now()).label("retry_due"),
    ).select_from(
        outerjoin(
            _ONE_ROW,
            _run,
            and_(
                _run.job_name == bindparam("job_name"),
                # 'RUNNING' inline, not a parameter: a prepared statement's generic plan
                # can only use the partial index (WHERE status = 'RUNNING') for a
                # literal; with a parameter it reads every run of the job, and slows
                # down as history grows.
                or_(
                    _run.status == literal_column("'RUNNING'"),
                    _run.scheduled_for == bindparam("scheduled_for"),
                ),
            ),
        )
    )
)

ABANDON = (
    update(_run)
    # Stale again when the row is written: a renewal that committed while this
    # waited for the row wins (READ COMMITTED re-checks the newest version).
    .where(_run.id == bindparam("run_id"), _run.status == RunStatus.RUNNING, _stale_heartbeat)
    .values(
        status=RunStatus.FAILURE,
        completed_at=func.now(),
        error_message=bindparam("error"),
        # A run with retries left is due again at once.
        retry_at=case((bindparam("retry", type_=Boolean()), func.now()), else_=null()),
    )
)

# Every RUNNING run (a literal status, so the partial index serves it), whether its
# heartbeat is stale, and how long until it would be.
RUNNING_RUNS = compile_statement(
    select(
        _run.id,
        _run.job_name,
        _run.scheduled_for,
        _run.attempt,
        _run.worker_id,
        _run.heartbeat_at,
        _stale_heartbeat.label("stale"),
        func.extract(
            "epoch", _run.heartbeat_at + bindparam("stale_after", type_=Interval()) - func.now()
        ).label("stale_in_s"),
    ).where(_run.status == literal_column("'RUNNING'"))
)

CONSUME_RETRY = update(_run).where(_run.id == bindparam("run_id")).values(retry_at=None)

# Oldest first, so each upstream's latest attempt is the one kept.
UPSTREAMS = (
    select(_run.job_name, _run.status, _run.error_message)
    .where(
        _run.job_name.in_(bindparam("upstreams", expanding=True)),
        _run.scheduled_for == bindparam("scheduled_for"),
    )
    .order_by(_run.id)
)

# clock_timestamp(), not now(): now() is the claim transaction's start, which can
# precede the upstream SUCCESS this claim has just read.
_STARTED = {"started_at": func.clock_timestamp(), "heartbeat_at": func.clock_timestamp()}
_INSERTED = (
    "job_name",
    "status",
    "scheduled_for",
    "trigger",
    "attempt",
    "worker_id",
    "params",
    "dry_run",
    "requested_by",
)
INSERT = compile_statement(
    insert(_run).values(**_STARTED).returning(_run.id, _run.started_at), keys=_INSERTED
)
INSERT_DONE = compile_statement(
    insert(_run)
    .values(**_STARTED, completed_at=func.clock_timestamp())
    .returning(_run.id, _run.started_at),
    keys=(*_INSERTED, "error_message"),
)


# claim_next's first statement. `requested` numbers the requests; `settled` finds,
# for each, a run that makes any claim of it a Skip whatever happens next: an
# outcome no retry follows, or a run that is still beating. The job rows of the
# others are locked in request order, skipping those another worker holds, and the
# first one taken is the claim's. Monotonic facts only are read from this
# statement's snapshot: whether to run is still decided by STATE, after the lock.
_requested = (
    func.unnest(
        bindparam("job_names", type_=ARRAY(Text)),
        bindparam("instants", type_=ARRAY(DateTime(timezone=True))),
    )
    .table_valued(
        column("job_name", Text),
        column("scheduled_for", DateTime(timezone=True)),
        with_ordinality="position",
    )
    .render_derived(name="requested")
)
_FINAL: list[ColumnClause[Any]] = [
    literal_column(f"'{s}'") for s in ("SUCCESS", "SKIPPED", "MISSED")
]
_settling = (
    select(_run.id, _run.status, _run.worker_id)
    .where(
        _run.job_name == _requested.c.job_name,
        _run.scheduled_for == _requested.c.scheduled_for,
        or_(
            _run.status.in_(_FINAL),
            (_run.status == literal_column("'RUNNING'")) & ~_stale_heartbeat,
        ),
    )
    .order_by(_run.attempt.desc())
    .limit(1)
    .lateral("settling")
)
_due = (
    select(
        _requested.c.position,
        _requested.c.job_name,
        _settling.c.id.label("settled_run"),
        _settling.c.status.label("settled_status"),
        _settling.c.worker_id.label("settled_worker"),
    )
    .select_from(_requested.outerjoin(_settling, true()))
    .cte("due")
)
_taken = (
    select(_due.c.position, JobRow.paused_reason, JobRow.alerted_at)
    .join_from(JobRow, _due, JobRow.name == _due.c.job_name)
    .where(_due.c.settled_run.is_(None))
    .order_by(_due.c.position)
    .limit(1)
    .with_for_update(of=JobRow, skip_locked=True)
    .cte("taken")
)
NEXT = compile_statement(
    select(
        _due.c.position,
        _due.c.settled_run,
        _due.c.settled_status,
        _due.c.settled_worker,
        _taken.c.paused_reason,
        _taken.c.alerted_at,
        _taken.c.position.is_not(None).label("locked"),
    )
    .select_from(_due.outerjoin(_taken, _due.c.position == _taken.c.position))
    .where(or_(_due.c.settled_run.is_not(None), _taken.c.position.is_not(None)))
    .order_by(_due.c.position)
)
