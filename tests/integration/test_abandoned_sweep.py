"""A run whose worker died is closed by any live worker, not only at its job's next instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.job import Job
from app.runtime.worker import utc_now
from app.store.database import Database
from tests.integration.cli_helpers import start_cronlock
from tests.integration.helpers import FrozenClock, age_run, claim, rows, wait_until, worker_for

TEN = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
FAST_LEASES = {"STALE_JOB_THRESHOLD_SECONDS": "3", "HEARTBEAT_INTERVAL_SECONDS": "1"}

HOURLY = """
import time
from app.job import job

@job("hourly", schedule="0 * * * *")
def hourly(ctx):
    time.sleep(120)

JOBS = [hourly]
"""


def _hourly() -> list[Job]:
    return [Job(name="hourly", body=lambda ctx: None, schedule="0 * * * *")]


def test_a_run_seen_live_on_another_worker_is_closed_once_it_goes_stale(database: Database):
    clock = FrozenClock(TEN + timedelta(seconds=1))
    live = worker_for(database, _hourly(), clock=clock, start_at=TEN - timedelta(seconds=1))
    dead = claim(database, job_name="hourly", scheduled_for=TEN, worker_id="dead:1")
    live.tick(clock())  # the instant is already running elsewhere: nothing to claim
    assert [r.status for r in rows(database)] == ["RUNNING"]
    assert live.sweep.next_at is not None
    age_run(database, dead.run_id, 3600)  # its worker died: no more heartbeats
    clock.moment = live.sweep.next_at
    live.tick(clock())
    [row] = rows(database)
    assert row.status == "FAILURE"
    assert row.error_message.startswith("abandoned: no heartbeat since")
    assert row.error_message.endswith(f"taken over by {live.worker_id}")
    # Nothing is RUNNING any more: no further sweep is planned.
    assert live.sweep.next_at is None


def test_a_live_run_is_left_alone_and_watched_again(database: Database):
    clock = FrozenClock(TEN + timedelta(seconds=1))
    live = worker_for(database, _hourly(), clock=clock, start_at=TEN - timedelta(seconds=1))
    claim(database, job_name="hourly", scheduled_for=TEN, worker_id="alive:1")
    live.tick(clock())
    clock.moment = live.sweep.next_at
    live.tick(clock())  # its heartbeat is fresh: not stale
    assert [r.status for r in rows(database)] == ["RUNNING"]
    assert live.sweep.next_at is not None
    assert live.sweep.next_at > clock()


def test_an_hourly_run_killed_with_sigkill_is_closed_within_the_threshold(
    database: Database, db_url: str, tmp_path: Path
):
    jobs_file = tmp_path / "hourly_jobs.py"
    jobs_file.write_text(HOURLY)
    command = start_cronlock(
        "run",
        "hourly",
        cwd=tmp_path,
        DATABASE_URL=db_url,
        JOBS_MODULE=str(jobs_file),
        **FAST_LEASES,
    )
    try:
        wait_until(lambda: [r.status for r in rows(database)] == ["RUNNING"], what="the run")
        # A worker that starts while the run is live sees it at start-up and watches it.
        live = worker_for(database, _hourly(), environ=FAST_LEASES, clock=utc_now)
        command.kill()
        command.communicate(timeout=30)  # reaps it and closes its pipes

        def closed() -> bool:
            live.tick(utc_now())
            return [r.status for r in rows(database)] == ["FAILURE"]

        # The promise is the stale threshold plus about one heartbeat interval, not
        # the hour until the job's next instant; the bound here only stops a hang.
        wait_until(closed, timeout_s=30, interval_s=0.2, what="the killed run to be closed")
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate(timeout=30)
    [row] = rows(database)
    assert row.error_message.endswith(f"taken over by {live.worker_id}")
