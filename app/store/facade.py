"""The store: the one object the rest of cronlock asks for anything kept in PostgreSQL.

Scheduling, running and observing call these methods; none of them writes SQL.
Each method is a unit of work of its own (its own transaction, or one autocommit
statement), except `finish_in`, which writes inside a run's own transaction.
Tests that need a store that fails or counts can wrap or subclass this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from app.core.claims import ClaimRequest, ClaimResult, NextClaim
from app.core.outcomes import Outcome, RunStatus
from app.core.planning import Missed
from app.core.stats import RunStats
from app.store import claiming, control, history, ledger, runs
from app.store.database import Database, limit_waits
from app.store.driver import DriverConnection
from app.store.models import JobExecution


class Store:
    """cronlock's tables, through one database's connection pool."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- jobs and claims ---------------------------------------------------------

    def ensure_jobs(self, names: Sequence[str]) -> None:
        """Create the lock row of each job (idempotent)."""
        claiming.ensure_jobs(self.database, names)

    def claim(self, request: ClaimRequest) -> ClaimResult:
        """Claim one (job, instant): see `app.store.claiming.claim_run`."""
        return claiming.claim_run(self.database, request)

    def claim_next(self, requests: Sequence[ClaimRequest]) -> NextClaim:
        """Claim the first of `requests` neither settled nor held: see `claiming.claim_next`."""
        return claiming.claim_next(self.database, requests)

    def close_stale_runs(
        self, *, stale_after_s: float, by: str, retry: Callable[[Any], bool]
    ) -> claiming.StaleSweep:
        """Close every RUNNING run whose heartbeat is stale: see `claiming.close_stale_runs`."""
        return claiming.close_stale_runs(
            self.database, stale_after_s=stale_after_s, by=by, retry=retry
        )

    # -- a run after its claim ---------------------------------------------------

    def renew(self, run_id: int, *, timeout_s: float) -> bool:
        """Renew a run's lease; False once the run is no longer this worker's."""
        return runs.renew_lease(self.database, run_id, timeout_s=timeout_s)

    def open_run_transaction(self, *, timeout_s: float | None) -> Connection:
        """A transactional run's transaction: its body's writes and its SUCCESS commit together.

        `timeout_s` caps each of its statements.
        """
        with self.database.translated_errors():
            conn = self.database.engine.connect()
            try:
                conn.begin()
                if timeout_s is not None:
                    limit_waits(conn, timeout_s)
            except BaseException:
                conn.close()
                raise
        return conn

    def finish(
        self,
        run_id: int,
        outcome: Outcome,
        *,
        retry_delay_s: float | None = None,
        expires_at: datetime | None = None,
    ) -> runs.Finished:
        """Record a run's outcome in one autocommit statement, fenced by its run id."""
        return runs.finish_run(
            self.database, run_id, outcome, retry_delay_s=retry_delay_s, expires_at=expires_at
        )

    def finish_in(self, transaction: Connection, run_id: int, outcome: Outcome) -> runs.Finished:
        """Record a run's outcome inside its own transaction (the caller commits)."""
        with self.database.translated_errors():
            return runs.finish_on(DriverConnection.under(transaction), run_id, outcome)

    def finish_held(
        self, run_id: int, sent: Sequence[Outcome]
    ) -> tuple[Outcome, runs.Finished] | None:
        """Which of `sent` (finishes whose answers were lost) the run holds, if any."""
        return runs.finish_held(self.database, run_id, sent)

    def takeover_of(self, run_id: int, job_name: str) -> runs.Takeover | None:
        """What became of a run whose late finish was fenced off."""
        return runs.takeover_of(self.database, run_id, job_name)

    # -- instants ------------------------------------------------------------------

    def record_missed(self, missed: Sequence[Missed]) -> Counter[str]:
        """Record MISSED runs in one statement; the rows written per job."""
        return runs.record_missed(self.database, missed)

    def pending_retries(self, *, stale_after_s: float) -> list[Any]:
        """Runs with a retry to come: job_name, scheduled_for, wait_s, due."""
        return runs.pending_retries(self.database, stale_after_s=stale_after_s)

    def drop_retries(self, instants: Sequence[tuple[str, datetime]]) -> list[tuple[str, datetime]]:
        """Clear the retries of (job, instant) pairs; the pairs this call cleared."""
        return runs.drop_retries(self.database, instants)

    def last_scheduled_instants(self, names: Sequence[str]) -> dict[str, datetime]:
        """Where each job's catch-up starts: its latest scheduled run's instant, else its
        registration."""
        return runs.last_scheduled_instants(self.database, names)

    def database_now(self) -> datetime:
        """The database clock."""
        return runs.database_now(self.database)

    # -- streaks and alerts ----------------------------------------------------------

    def streaks(self, names: Sequence[str]) -> dict[str, history.Streak]:
        """Each job's last success and the failures since."""
        return history.streaks(self.database, names)

    def recent_failures(self, job_name: str, *, limit: int) -> list[tuple[int, str | None]]:
        """The job's newest FAILURE runs: (run id, error), newest first."""
        query = (
            select(JobExecution.id, JobExecution.error_message)
            .where(JobExecution.job_name == job_name, JobExecution.status == RunStatus.FAILURE)
            .order_by(JobExecution.id.desc())
            .limit(limit)
        )
        with self.database.autocommit() as conn:
            return [(row.id, row.error_message) for row in conn.execute(query)]

    def open_alert(self, name: str) -> bool:
        """Mark the job's streak alerted; True for the one caller that does it first."""
        return control.open_alert(self.database, name)

    def close_alert(self, name: str) -> bool:
        """End the job's alerted streak; True for the one caller that does it first."""
        return control.close_alert(self.database, name)

    # -- pauses --------------------------------------------------------------------

    def pause_job(self, name: str, *, reason: str, paused_by: str) -> None:
        """Pause one job on every replica."""
        control.pause_job(self.database, name, reason=reason, paused_by=paused_by)

    def resume_job(self, name: str) -> bool:
        """Resume one job; False when it was not paused."""
        return control.resume_job(self.database, name)

    def pause_all(self, *, reason: str, paused_by: str) -> None:
        """Pause every job on every replica."""
        control.pause_all(self.database, reason=reason, paused_by=paused_by)

    def resume_all(self) -> bool:
        """Lift `pause --all`; False when it was not set."""
        return control.resume_all(self.database)

    def pauses(self) -> tuple[control.Pause | None, dict[str, control.Pause]]:
        """The global pause, if any, and each paused job's pause."""
        return control.pauses(self.database)

    # -- history -------------------------------------------------------------------

    def last_runs(self, names: Sequence[str]) -> dict[str, history.RunRecord]:
        """The most recent run of each named job."""
        return history.last_runs(self.database, names)

    def list_runs(
        self,
        *,
        job_name: str | None = None,
        status: str | None = None,
        unrecovered_failures: bool = False,
        limit: int = 20,
    ) -> list[history.RunRecord]:
        """The newest runs first, filtered (see `history.list_runs`)."""
        return history.list_runs(
            self.database,
            job_name=job_name,
            status=status,
            unrecovered_failures=unrecovered_failures,
            limit=limit,
        )

    def job_stats(self, *, days: int, names: Sequence[str] | None = None) -> dict[str, RunStats]:
        """Per job (every job, or those `names`), over the last `days` UTC days: runs,
        failures, average and p95."""
        return ledger.run_stats(self.database, days=days, names=names)

    def last_successes(self, names: Sequence[str]) -> dict[str, history.RunRecord]:
        """Each named job's latest SUCCESS."""
        return ledger.last_successes(self.database, names)

    def runs_page(
        self, job_name: str, *, status: str | None, before: int | None, limit: int
    ) -> list[history.RunRecord]:
        """A job's runs newest first, below the `before` id (see `ledger.runs_page`)."""
        return ledger.runs_page(self.database, job_name, status=status, before=before, limit=limit)

    def instant_runs(
        self, job_name: str, *, after: datetime, until: datetime
    ) -> dict[datetime, ledger.InstantRuns]:
        """The scheduled runs of a job's instants in (after, until], by instant."""
        return ledger.instant_runs(self.database, job_name, after=after, until=until)

    def recent_outcomes(
        self, lower_bounds: dict[str, datetime], *, per_job: int
    ) -> dict[tuple[str, datetime], str]:
        """Each job's scheduled instants' latest status from its lower bound on."""
        return ledger.recent_outcomes(self.database, lower_bounds, per_job=per_job)

    def attempts_of(self, job_name: str, scheduled_for: datetime) -> list[history.RunRecord]:
        """Every run of one (job, instant), first attempt first."""
        return ledger.attempts_of(self.database, job_name, scheduled_for)

    def registered_at(self, names: Sequence[str]) -> dict[str, datetime]:
        """When each named job was first registered."""
        return ledger.job_registered_at(self.database, names)

    def get_run(self, run_id: int) -> history.RunRecord | None:
        """One run by id."""
        return history.get_run(self.database, run_id)

    def latest_attempt(self, job_name: str, scheduled_for: datetime) -> JobExecution:
        """The run of a (job, instant) with the highest attempt."""
        return history.latest_attempt(self.database, job_name, scheduled_for)

    def recorded_job_names(self) -> list[str]:
        """Every job name that has a lock row."""
        return history.recorded_job_names(self.database)

    def prune_runs(self, *, older_than: timedelta, batch_size: int = 1000) -> int:
        """Delete finished runs older than `older_than`, in batches, and the per-day counts
        of the days wholly older; the count of runs deleted."""
        deleted = history.prune_runs(self.database, older_than=older_than, batch_size=batch_size)
        ledger.prune_day_counts(self.database, days=max(older_than.days, 1))
        return deleted

    def session(self) -> Session:
        """A new ORM session for code that manages its own transactions (job bodies)."""
        return self.database.session()
