"""Small helpers shared by the integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import text

from app.config import Settings
from app.core.claims import ClaimRequest, ClaimResult
from app.job import Job, RunContext
from app.registry import JobRegistry, configure
from app.runtime.worker import Clock, Worker, utc_now
from app.store.claiming import claim_run, ensure_jobs
from app.store.database import Database
from app.store.facade import Store

INSTANT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

T = TypeVar("T")


def claim(database: Database, job_name: str = "a", **options: Any) -> ClaimResult:
    """Claim `job_name` for INSTANT (or `scheduled_for`) with test defaults."""
    ensure_jobs(database, [job_name])
    defaults: dict[str, Any] = {
        "scheduled_for": INSTANT,
        "trigger": "schedule",
        "worker_id": "test:1",
        "stale_after_s": 3600,
    }
    return claim_run(database, ClaimRequest(job_name=job_name, **{**defaults, **options}))


def rows(database: Database, where: str = "true") -> list[Any]:
    """Every run, oldest first."""
    with database.transaction() as session:
        return list(
            session.execute(
                text(
                    "SELECT id, job_name, status, scheduled_for, trigger, worker_id, "
                    "error_message, result, started_at, completed_at "
                    f"FROM job_execution WHERE {where} ORDER BY id"
                )
            )
        )


def age_run(database: Database, run_id: int, seconds: int) -> None:
    """Pretend a run started (and last beat) `seconds` ago, by the database clock."""
    with database.transaction() as session:
        session.execute(
            text(
                "UPDATE job_execution SET started_at = now() - make_interval(secs => :s), "
                "heartbeat_at = now() - make_interval(secs => :s) WHERE id = :id"
            ),
            {"s": seconds, "id": run_id},
        )


def wait_for_lock_wait(database: Database, query_start: str) -> None:
    """Return once a backend waits on a lock in a statement starting with `query_start`."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :q"
    )
    for _ in range(600):  # bounds a hang only: Postgres says when the wait has begun
        with database.transaction() as session:
            if session.execute(waiting, {"q": query_start + "%"}).scalar_one():
                return
        threading.Event().wait(0.05)
    raise AssertionError(f"no statement {query_start!r} ever waited for a lock")


class FrozenClock:
    """A clock the test moves by hand."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def worker_for(
    database: Database,
    jobs: list[Job],
    *,
    environ: dict[str, str] | None = None,
    clock: Clock | None = None,
    start_at: datetime | None = None,
    worker_id: str = "test:1",
    registered_before_latest: bool = False,
) -> Worker:
    """A started Worker on `jobs`, configured from `environ` alone.

    `registered_before_latest`: the jobs were deployed just before their latest
    instant by the worker's clock, so `run_once` has that instant to run.
    """
    settings = Settings.from_env(environ or {})
    configured = configure(JobRegistry(jobs), settings)
    if registered_before_latest:
        moment = (clock or utc_now)()
        register_before_latest(database, {c.name: c.schedule for c in configured}, moment)
    worker = Worker(
        database if isinstance(database, Store) else Store(database),
        configured,
        settings,
        worker_id=worker_id,
        clock=clock or utc_now,
    )
    worker.start(now=start_at)
    return worker


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout_s: float = 30,
    interval_s: float = 0.05,
    what: str | None = None,
) -> T:
    """Poll `predicate()` until it returns a truthy value, and return that value.

    The state polled decides; the timeout only bounds a hang, and the failure says
    `what` was awaited (else which predicate).
    """
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            awaited = what or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {awaited}")
        time.sleep(interval_s)
    return value


def retry_due(database: Database) -> bool:
    """True once a failed run's retry is due, by the database clock."""
    with database.transaction() as session:
        due = session.execute(text("SELECT bool_or(retry_at <= now()) FROM job_execution"))
        return bool(due.scalar())


def yearly_failure_due_for_retry(database: Database, moment: list[datetime]) -> Worker:
    """A worker whose yearly job failed at `moment[0]`, once its retry is due.

    The worker's clock reads `moment[0]`, for the test to move.
    """

    def failing(ctx: RunContext) -> None:
        raise RuntimeError("down")

    jobs = [Job(name="yearly", body=failing, schedule="0 0 1 1 *", retries=1, retry_backoff_s=0.2)]
    worker = worker_for(database, jobs, clock=lambda: moment[0], registered_before_latest=True)
    worker.run_once()
    wait_until(lambda: retry_due(database))
    return worker


def register_before_latest(
    database: Database | Store | str, schedules: dict[str, Any], now: datetime | None = None
) -> None:
    """Register jobs as deployed just before their latest instant at `now` (their rows'
    created_at), so a worker starting then has that instant to run, as if missed.

    `schedules` maps job names to schedule expressions or parsed schedules.
    """
    from app.core.schedule import parse_schedule

    if isinstance(database, str):  # a URL: a command's database, before it starts
        owned = Database(database)
        try:
            register_before_latest(owned, schedules, now)
        finally:
            owned.dispose()
        return
    if isinstance(database, Store):
        database = database.database
    now = now or utc_now()
    with database.transaction() as session:
        for name, given in schedules.items():
            schedule = (
                parse_schedule(given, zone=UTC, source="test") if isinstance(given, str) else given
            )
            at = schedule.latest_at_or_before(now) - timedelta(seconds=1)
            session.execute(
                text(
                    "INSERT INTO job (name, created_at) VALUES (:n, :t) "
                    "ON CONFLICT (name) DO UPDATE SET created_at = :t"
                ),
                {"n": name, "t": at},
            )
