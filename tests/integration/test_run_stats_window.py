"""The statistics the console and `cronlock jobs` show: the trigger counts each outcome into
its job's day, and run_stats adds the days of the window up, histograms included."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import text

from app.core.stats import bucket_of, percentile_ms
from app.store.claiming import ensure_jobs
from app.store.ledger import run_stats


def _record(database, job: str, status: str, *, days_ago: int, took_ms: float, n: int) -> None:
    """A finished run, started at noon UTC `days_ago` days ago (its counted day)."""
    with database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, worker_id,"
                " started_at, completed_at)"
                " SELECT :job, :status, noon + make_interval(secs => :n), 'schedule', 'w',"
                " noon, noon + make_interval(secs => :took_ms / 1000.0)"
                " FROM (SELECT ((timezone('UTC', now())::date - :days_ago) + time '12:00')"
                " AT TIME ZONE 'UTC' AS noon) AS day"
            ),
            {"job": job, "status": status, "days_ago": days_ago, "took_ms": took_ms, "n": n},
        )


def test_run_stats_adds_up_the_days_of_the_window(database):
    ensure_jobs(database, ["a", "old"])
    ran = [("SUCCESS", 0, 10.0), ("SUCCESS", 0, 20.0), ("SUCCESS", 0, 40.0)]
    ran += [("FAILURE", 0, 80.0), ("SUCCESS", 1, 2000.0), ("SUCCESS", 29, 5.0)]
    for n, (status, days_ago, took_ms) in enumerate(ran):
        _record(database, "a", status, days_ago=days_ago, took_ms=took_ms, n=n)
    _record(database, "a", "SKIPPED", days_ago=0, took_ms=0, n=10)
    _record(database, "a", "MISSED", days_ago=1, took_ms=0, n=11)
    _record(database, "a", "SUCCESS", days_ago=30, took_ms=9000.0, n=12)  # out of the window
    _record(database, "old", "SUCCESS", days_ago=40, took_ms=10.0, n=0)

    stats = run_stats(database, days=30)

    assert set(stats) == {"a"}
    durations = [took_ms for _, _, took_ms in ran]
    assert (stats["a"].runs, stats["a"].failures) == (6, 1)
    assert (stats["a"].skipped, stats["a"].missed) == (1, 1)
    assert stats["a"].average_ms == pytest.approx(sum(durations) / len(durations))
    assert stats["a"].p95_ms == percentile_ms(Counter(bucket_of(ms) for ms in durations), 0.95)
