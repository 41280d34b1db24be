"""Reading and pruning run history: the SQL behind `cronlock jobs`, `history` and the prune job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, ScalarSelect, delete, func, or_, select, true
from sqlalchemy.orm import aliased

from app.core.outcomes import RunStatus, Trigger
from app.store.database import Database
from app.store.models import JobExecution, JobRow


@dataclass(frozen=True)
class RunRecord:
    """One row of job_execution, as the CLI shows it."""

    id: int
    job_name: str
    status: str
    scheduled_for: datetime
    trigger: str
    attempt: int
    started_at: datetime
    completed_at: datetime | None
    worker_id: str
    error_message: str | None
    result: dict[str, Any] | None
    params: dict[str, Any] | None = None
    dry_run: bool = False
    requested_by: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Wall time from start to outcome; None while running, and for an outcome that
        ran nothing (SKIPPED, MISSED)."""
        if self.completed_at is None or self.status in (RunStatus.SKIPPED, RunStatus.MISSED):
            return None
        return (self.completed_at - self.started_at).total_seconds()


RUN_COLUMNS = [getattr(JobExecution, name) for name in RunRecord.__dataclass_fields__]


def last_runs(database: Database, names: Sequence[str]) -> dict[str, RunRecord]:
    """The most recent run of each named job (one index probe per job)."""
    return latest_runs(database, names)


def latest_runs(
    database: Database, names: Sequence[str], *criteria: ColumnElement[bool]
) -> dict[str, RunRecord]:
    """Each named job's latest run meeting `criteria`, in one statement (a lateral probe
    of the (job_name, scheduled_for, ...) indexes per job)."""
    latest = (
        select(*RUN_COLUMNS)
        .where(JobExecution.job_name == JobRow.name, *criteria)
        .order_by(JobExecution.scheduled_for.desc(), JobExecution.id.desc())
        .limit(1)
        .lateral()
    )
    query = (
        select(*[getattr(latest.c, name) for name in RunRecord.__dataclass_fields__])
        .select_from(JobRow)
        .join(latest, true())
        .where(JobRow.name.in_(list(names)))
    )
    with database.transaction() as session:
        return {row.job_name: RunRecord(*row) for row in session.execute(query)}


def list_runs(
    database: Database,
    *,
    job_name: str | None = None,
    status: str | None = None,
    unrecovered_failures: bool = False,
    limit: int = 20,
) -> list[RunRecord]:
    """The newest runs first, optionally for one job and one status.

    `unrecovered_failures` is the dead-letter view: FAILURE runs whose instant has
    no SUCCESS (no retry, manual or automatic, made up for them), and that are
    their instant's latest attempt: the runs `cronlock retry` takes.
    """
    query = select(*RUN_COLUMNS).order_by(JobExecution.id.desc()).limit(limit)
    if job_name is not None:
        query = query.where(JobExecution.job_name == job_name)
    if status is not None:
        query = query.where(JobExecution.status == status)
    if unrecovered_failures:
        other = aliased(JobExecution)
        recovered_or_retried = (
            select(other.id)
            .where(
                other.job_name == JobExecution.job_name,
                other.scheduled_for == JobExecution.scheduled_for,
                or_(other.status == RunStatus.SUCCESS, other.attempt > JobExecution.attempt),
            )
            .exists()
        )
        query = query.where(JobExecution.status == RunStatus.FAILURE, ~recovered_or_retried)
    with database.transaction() as session:
        return [RunRecord(*row) for row in session.execute(query)]


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Streak:
    """A job's last success and the failures recorded since; when the job was first seen."""

    last_success_at: datetime | None
    failures: int
    registered_at: datetime | None = None
    last_failure_at: datetime | None = None  # the streak's latest, when it has any


def streaks(database: Database, names: Sequence[str]) -> dict[str, Streak]:
    """Each job's last success, and the failures since (how many, the latest): two probes."""
    last = (
        select(JobExecution.scheduled_for, JobExecution.completed_at)
        .where(JobExecution.job_name == JobRow.name, JobExecution.status == RunStatus.SUCCESS)
        .order_by(JobExecution.scheduled_for.desc())
        .limit(1)
        .lateral()
    )
    failures = (
        select(func.count().label("count"), func.max(JobExecution.completed_at).label("latest"))
        .where(
            JobExecution.job_name == JobRow.name,
            JobExecution.status == RunStatus.FAILURE,
            JobExecution.scheduled_for > func.coalesce(last.c.scheduled_for, _BEGINNING),
        )
        .lateral()
    )
    query = (
        select(
            JobRow.name,
            last.c.completed_at,
            failures.c.count,
            JobRow.created_at,
            failures.c.latest,
        )
        .select_from(JobRow)
        .outerjoin(last, true())
        .join(failures, true())
        .where(JobRow.name.in_(list(names)))
    )
    with database.transaction() as session:
        rows = session.execute(query)
        return {
            name: Streak(at, int(n), created, failed_at) for name, at, n, created, failed_at in rows
        }


def get_run(database: Database, run_id: int) -> RunRecord | None:
    """One run by id."""
    with database.transaction() as session:
        row = session.execute(select(*RUN_COLUMNS).where(JobExecution.id == run_id)).first()
    return RunRecord(*row) if row else None


def latest_attempt(database: Database, job_name: str, scheduled_for: datetime) -> JobExecution:
    """The run of a (job, instant) with the highest attempt (there is at least one)."""
    query = (
        select(JobExecution)
        .where(JobExecution.job_name == job_name, JobExecution.scheduled_for == scheduled_for)
        .order_by(JobExecution.attempt.desc())
        .limit(1)
    )
    with database.transaction() as session:
        return session.execute(query).scalar_one()


def recorded_job_names(database: Database) -> list[str]:
    """Every job name that has a lock row, registered now or in the past."""
    with database.transaction() as session:
        return list(session.scalars(select(JobRow.name).order_by(JobRow.name)))


def _newest_run(*criteria: ColumnElement[bool]) -> ScalarSelect[int]:
    """The id of each job's newest run (meeting `criteria`), per row of `job`."""
    return (
        select(JobExecution.id)
        .where(JobExecution.job_name == JobRow.name, *criteria)
        .order_by(JobExecution.scheduled_for.desc(), JobExecution.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def prune_runs(database: Database, *, older_than: timedelta, batch_size: int = 1000) -> int:
    """Delete finished runs started before now() - `older_than`, in batches; return the count.

    Never deletes a RUNNING run, nor a job's latest run, which the built-in pre-check
    needs to know its last instant was handled, nor its latest scheduled run, where
    catch-up starts after a restart (a later manual run does not stand in for it).
    """
    with database.transaction() as session:
        keep = [
            i
            for row in session.execute(
                select(
                    _newest_run(), _newest_run(JobExecution.trigger == Trigger.SCHEDULE)
                ).select_from(JobRow)
            )
            for i in row
            if i is not None
        ]
    batch = (
        select(JobExecution.id)
        .where(
            JobExecution.started_at < func.now() - older_than,
            JobExecution.status != RunStatus.RUNNING,
            JobExecution.id.not_in(keep),
        )
        .order_by(JobExecution.started_at)
        .limit(batch_size)
        .scalar_subquery()
    )
    deleted = 0
    while True:
        with database.transaction() as session:
            result = session.execute(delete(JobExecution).where(JobExecution.id.in_(batch)))
            count = cast(CursorResult[Any], result).rowcount
        deleted += count
        if count < batch_size:
            return deleted
