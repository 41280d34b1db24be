"""Per-day outcome counts: kept by a trigger in the statement that records each outcome,
backfilled by their migration, read by `jobs` and the console, pruned with the runs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.core.claims import Claim
from app.core.outcomes import Outcome, RunStatus
from app.core.planning import Missed
from app.core.stats import bucket_of
from app.store.claiming import ensure_jobs
from app.store.database import Database
from app.store.facade import Store
from app.store.migrations import downgrade, upgrade_to_head
from tests.integration.helpers import INSTANT, claim


def _record(
    database: Database, job: str, status: str, took_ms: float, *, day_offset: int = 0, n: int = 0
) -> None:
    """A finished run recorded in one INSERT (as MISSED rows and sweeps are)."""
    with database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, worker_id, "
                "started_at, completed_at) VALUES (:job, :status, :at, 'schedule', 'w', "
                "now() - make_interval(days => :days) - make_interval(secs => :s), "
                "now() - make_interval(days => :days))"
            ),
            {
                "job": job,
                "status": status,
                "at": INSTANT + timedelta(minutes=n, days=-day_offset),
                "s": took_ms / 1000,
                "days": day_offset,
            },
        )


def _counts(database: Database, job: str) -> list[Any]:
    with database.transaction() as session:
        return list(
            session.execute(
                text(
                    "SELECT day, runs, failures, skipped, missed, duration_ms_sum, durations "
                    "FROM job_day_counts WHERE job_name = :job ORDER BY day"
                ),
                {"job": job},
            )
        )


def test_the_database_buckets_durations_as_the_code_reads_them(database: Database):
    durations = [0.0, 0.4, 1.0, 1.09, 2.0, 3.7, 999.99, 1000.0, 65_432.1, 3.6e6, 2.6e9]
    with database.transaction() as session:
        found = [
            session.execute(text("SELECT cronlock_duration_bucket(:ms)"), {"ms": ms}).scalar_one()
            for ms in durations
        ]
    assert found == [bucket_of(ms) for ms in durations]


def test_each_outcome_is_counted_once_whichever_way_it_is_recorded(database: Database):
    store = Store(database)
    won = claim(database, "a")
    assert isinstance(won, Claim)
    run_id = won.run_id
    assert _counts(database, "a") == []  # RUNNING counts nothing yet
    store.renew(run_id, timeout_s=5)  # a heartbeat is not an outcome
    assert _counts(database, "a") == []
    store.finish(run_id, Outcome(RunStatus.FAILURE, error="boom"))
    _record(database, "a", "SUCCESS", 12.0, n=1)
    _record(database, "a", "SKIPPED", 0.0, n=2)
    ensure_jobs(database, ["a"])
    store.record_missed([Missed("a", INSTANT + timedelta(minutes=3), "worker down")])
    with database.transaction() as session:  # rewriting a stored error changes no count
        session.execute(
            text("UPDATE job_execution SET error_message = 'x' WHERE id = :i"), {"i": run_id}
        )
    (day,) = _counts(database, "a")
    assert (day.runs, day.failures, day.skipped, day.missed) == (2, 1, 1, 1)
    assert sum(day.durations.values()) == 2
    assert str(bucket_of(12.0)) in day.durations


def test_statistics_come_from_the_counts_and_respect_the_window(database: Database):
    ensure_jobs(database, ["a", "b"])
    durations = [5.0 * (i + 1) for i in range(40)]
    for i, took in enumerate(durations):
        _record(database, "a", "SUCCESS" if i % 10 else "FAILURE", took, n=i)
    _record(database, "a", "SUCCESS", 99_999.0, day_offset=40, n=100)  # outside the window
    _record(database, "b", "SKIPPED", 0.0)
    stats = Store(database).job_stats(days=30)
    a = stats["a"]
    assert (a.runs, a.failures) == (40, 4)
    assert a.average_ms == pytest.approx(sum(durations) / 40, rel=1e-3)
    exact_p95 = sorted(durations)[math.ceil(0.95 * 40) - 1]
    assert a.p95_ms is not None
    assert abs(a.p95_ms - exact_p95) / exact_p95 < 0.045
    assert (stats["b"].runs, stats["b"].skipped, stats["b"].p95_ms) == (0, 1, None)


def test_pruning_runs_prunes_the_days_they_were_counted_on(database: Database):
    ensure_jobs(database, ["a"])
    _record(database, "a", "SUCCESS", 3.0, day_offset=45, n=1)
    _record(database, "a", "SUCCESS", 3.0, day_offset=45, n=2)
    _record(database, "a", "SUCCESS", 3.0, n=3)
    assert len(_counts(database, "a")) == 2
    Store(database).prune_runs(older_than=timedelta(days=30))
    (kept,) = _counts(database, "a")
    assert kept.day == datetime.now(UTC).date()


def test_the_migration_counts_the_runs_already_recorded(database: Database):
    ensure_jobs(database, ["a"])
    downgrade(database, "0005")
    for i, (status, took) in enumerate(
        [("SUCCESS", 4.0), ("SUCCESS", 40.0), ("FAILURE", 400.0), ("SKIPPED", 0), ("MISSED", 0)]
    ):
        _record(database, "a", status, took, n=i)
    _record(database, "a", "SUCCESS", 8.0, day_offset=2, n=10)
    upgrade_to_head(database)
    earlier, today = _counts(database, "a")
    assert (earlier.runs, earlier.durations) == (1, {str(bucket_of(8.0)): 1})
    assert (today.runs, today.failures, today.skipped, today.missed) == (3, 1, 1, 1)
    assert today.duration_ms_sum == pytest.approx(444.0, rel=1e-3)
    assert sorted(today.durations) == sorted(str(bucket_of(ms)) for ms in (4.0, 40.0, 400.0))
    # And the trigger counts from there on.
    _record(database, "a", "SUCCESS", 4.0, n=20)
    assert _counts(database, "a")[-1].runs == 4
