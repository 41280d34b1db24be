"""Several `cronlock worker` processes on one database: every (job, instant) runs once."""

from __future__ import annotations

import signal
from pathlib import Path

from sqlalchemy import text

from app.store.database import Database
from tests.integration.cli_helpers import start_cronlock
from tests.integration.faults import scalar
from tests.integration.helpers import wait_until

WORKERS = 3
JOBS = ["alpha", "beta", "gamma", "delta"]
INSTANTS_WANTED = 5

JOBS_MODULE = """
from app.job import job

def _noop(ctx):
    return {"job": ctx.job_name}

alpha = job("alpha", schedule="* * * * * *")(_noop)
beta = job("beta", schedule="* * * * * *")(_noop)
gamma = job("gamma", schedule="* * * * * *")(_noop)
delta = job("delta", schedule="* * * * * *", run_after=["alpha"])(_noop)
JOBS = [alpha, beta, gamma, delta]
"""


def _wait_for(database: Database, query: str, predicate, timeout_s: float = 60) -> None:
    """Poll the table until `predicate(value)`: progress is decided by the database."""
    wait_until(
        lambda: predicate(scalar(database, query)), timeout_s=timeout_s, interval_s=0.2, what=query
    )


def test_replicas_run_each_instant_exactly_once(database: Database, db_url: str, tmp_path: Path):
    jobs_file = tmp_path / "replica_jobs.py"
    jobs_file.write_text(JOBS_MODULE)
    workers = [
        start_cronlock("worker", cwd=tmp_path, DATABASE_URL=db_url, JOBS_MODULE=str(jobs_file))
        for _ in range(WORKERS)
    ]
    try:
        _wait_for(
            database,
            "SELECT min(n) FROM (SELECT count(DISTINCT scheduled_for) AS n FROM job_execution "
            "WHERE status = 'SUCCESS' GROUP BY job_name HAVING count(*) > 0) s "
            f"HAVING count(*) = {len(JOBS)}",
            lambda n: n is not None and n >= INSTANTS_WANTED,
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]

    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert " ERROR " not in stderr, stderr

    with database.transaction() as session:
        per_instant = session.execute(
            text(
                "SELECT job_name, scheduled_for, count(*) FROM job_execution "
                "GROUP BY job_name, scheduled_for HAVING count(*) <> 1"
            )
        ).all()
        statuses = dict(
            session.execute(
                text("SELECT status, count(*) FROM job_execution GROUP BY status")
            ).all()
        )
        out_of_order = session.execute(
            text(
                "SELECT d.scheduled_for FROM job_execution d JOIN job_execution a "
                "ON a.job_name = 'alpha' AND a.scheduled_for = d.scheduled_for "
                "WHERE d.job_name = 'delta' AND d.started_at < a.completed_at"
            )
        ).all()
        orphans = session.execute(
            text(
                "SELECT d.scheduled_for FROM job_execution d WHERE d.job_name = 'delta' AND NOT "
                "EXISTS (SELECT 1 FROM job_execution a WHERE a.job_name = 'alpha' "
                "AND a.scheduled_for = d.scheduled_for AND a.status = 'SUCCESS')"
            )
        ).all()
    assert per_instant == [], "a (job, instant) ran more than once"
    assert set(statuses) == {"SUCCESS"}, statuses
    assert statuses["SUCCESS"] >= len(JOBS) * INSTANTS_WANTED
    assert out_of_order == [], "delta started before alpha finished the same instant"
    assert orphans == [], "delta ran for an instant alpha did not succeed"


SLOW_JOB = """
import time
from app.job import job

@job("slow", schedule="* * * * * *")
def slow(ctx):
    time.sleep(1.5)
    return {"finished": True}

JOBS = [slow]
"""


def test_sigterm_lets_the_current_run_finish(database: Database, db_url: str, tmp_path: Path):
    jobs_file = tmp_path / "slow_jobs.py"
    jobs_file.write_text(SLOW_JOB)
    worker = start_cronlock("worker", cwd=tmp_path, DATABASE_URL=db_url, JOBS_MODULE=str(jobs_file))
    try:
        _wait_for(
            database,
            "SELECT count(*) FROM job_execution WHERE status = 'RUNNING'",
            lambda n: n == 1,
        )
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    with database.transaction() as session:
        runs = session.execute(text("SELECT status, result FROM job_execution")).all()
    # A worker slow to start (a loaded machine) may find an instant already past:
    # recorded MISSED, as it should be. The run it started is what this test is about.
    assert [(r.status, r.result) for r in runs if r.status != "MISSED"] == [
        ("SUCCESS", {"finished": True})
    ]


def test_a_second_signal_stops_at_once_and_records_failure(
    database: Database, db_url: str, tmp_path: Path
):
    jobs_file = tmp_path / "slow_jobs.py"
    jobs_file.write_text(SLOW_JOB.replace("time.sleep(1.5)", "time.sleep(60)"))
    worker = start_cronlock("worker", cwd=tmp_path, DATABASE_URL=db_url, JOBS_MODULE=str(jobs_file))
    try:
        _wait_for(
            database,
            "SELECT count(*) FROM job_execution WHERE status = 'RUNNING'",
            lambda n: n == 1,
        )
        worker.send_signal(signal.SIGTERM)
        _wait_for_text(worker, "SIGTERM received")
        worker.send_signal(signal.SIGINT)
        worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 130
    with database.transaction() as session:
        runs = session.execute(text("SELECT status, error_message FROM job_execution")).all()
    # As above: a MISSED instant from a slow start is not the run this test stops.
    assert [(r.status, r.error_message) for r in runs if r.status != "MISSED"] == [
        ("FAILURE", "interrupted by a second stop signal")
    ]


def _wait_for_text(process, needle: str, timeout_s: float = 30) -> None:
    """Read the process's stderr until `needle` appears."""

    def next_line_has_it() -> bool:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise AssertionError(f"the process exited before {needle!r} appeared")
        return needle in line

    # No pause between polls: each one blocks in readline until there is a line.
    wait_until(next_line_has_it, timeout_s=timeout_s, interval_s=0, what=f"{needle!r} on stderr")
