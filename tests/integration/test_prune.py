"""prune-job-history deletes old finished runs in batches, never RUNNING ones nor a job's latest."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from app.store.claiming import ensure_jobs
from app.store.history import prune_runs
from tests.integration.helpers import INSTANT, rows


def _insert(
    database, job: str, status: str, minutes: int, age_days: int, *, trigger: str = "schedule"
) -> None:
    with database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, worker_id, "
                "started_at, completed_at) VALUES (:job, :status, :at, :trigger, 'w', "
                "now() - make_interval(days => :age), "
                "CASE WHEN :status = 'RUNNING' THEN NULL ELSE now() END)"
            ),
            {
                "job": job,
                "status": status,
                "at": INSTANT + timedelta(minutes=minutes),
                "age": age_days,
                "trigger": trigger,
            },
        )


def test_prune_keeps_running_recent_and_each_jobs_latest_run(database):
    ensure_jobs(database, ["a", "b"])
    for minute in range(5):
        _insert(database, "a", "SUCCESS", minute, age_days=40)
    _insert(database, "a", "FAILURE", 5, age_days=40)
    _insert(database, "a", "SUCCESS", 6, age_days=1)
    _insert(database, "b", "RUNNING", 0, age_days=40)
    _insert(database, "b", "SUCCESS", -1, age_days=41)
    _insert(database, "b", "SUCCESS", 1, age_days=40)  # b's latest: kept despite its age

    deleted = prune_runs(database, older_than=timedelta(days=30), batch_size=2)

    assert deleted == 7
    kept = {(r.job_name, r.status, r.scheduled_for - INSTANT) for r in rows(database)}
    assert kept == {
        ("a", "SUCCESS", timedelta(minutes=6)),
        ("b", "RUNNING", timedelta(0)),
        ("b", "SUCCESS", timedelta(minutes=1)),
    }


def test_prune_keeps_the_latest_scheduled_run_that_catch_up_starts_from(database):
    # A yearly job run by hand after its scheduled run: without the scheduled run,
    # a restarted worker would see no schedule history and skip a missed instant.
    ensure_jobs(database, ["yearly"])
    _insert(database, "yearly", "SUCCESS", 0, age_days=400)
    _insert(database, "yearly", "SUCCESS", 1, age_days=300)
    _insert(database, "yearly", "SUCCESS", 2, age_days=200, trigger="manual")

    assert prune_runs(database, older_than=timedelta(days=30)) == 1
    kept = {(r.trigger, r.scheduled_for - INSTANT) for r in rows(database)}
    assert kept == {("schedule", timedelta(minutes=1)), ("manual", timedelta(minutes=2))}
