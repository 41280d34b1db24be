"""Steering a running deployment: pause and resume on every replica, retry, dead letters."""

from __future__ import annotations

import json
from pathlib import Path

from app.store.database import Database
from tests.integration.cli_helpers import cronlock
from tests.integration.faults import invariants, scalar, start_worker, stop, wait_for, write_jobs
from tests.integration.helpers import register_before_latest

PAUSED_RUNS_AFTER = (
    "SELECT count(*) FROM job_execution WHERE status = 'SUCCESS' AND started_at > :t"
)


def test_pause_and_resume_are_honoured_by_every_replica(
    database: Database, db_url: str, tmp_path: Path
):
    workers = [start_worker(tmp_path, db_url, FAULT_JOBS="2") for _ in range(2)]
    env = {"DATABASE_URL": db_url, "JOBS_MODULE": str(write_jobs(tmp_path)), "FAULT_JOBS": "2"}
    try:
        wait_for(database, "SELECT count(*) >= 4 FROM job_execution WHERE status = 'SUCCESS'")
        paused = cronlock(
            "pause", "job-00", "--reason", "provider maintenance", cwd=tmp_path, **env
        )
        assert paused.returncode == 0, paused.stderr
        assert "job-00 paused: provider maintenance" in paused.stdout
        paused_at = scalar(database, "SELECT paused_at FROM job WHERE name = 'job-00'")
        wait_for(
            database,
            "SELECT count(*) >= 3 FROM job_execution WHERE job_name = 'job-00' "
            "AND status = 'SKIPPED' AND error_message = 'paused: provider maintenance'",
        )
        # The other job kept running; the paused one started nothing after the pause.
        assert scalar(database, PAUSED_RUNS_AFTER + " AND job_name = 'job-01'", t=paused_at) >= 1
        assert scalar(database, PAUSED_RUNS_AFTER + " AND job_name = 'job-00'", t=paused_at) == 0
        listed = cronlock("jobs", cwd=tmp_path, **env)
        assert "yes: provider maintenance" in listed.stdout

        resumed = cronlock("resume", "job-00", cwd=tmp_path, **env)
        assert "job-00 resumed" in resumed.stdout
        resumed_at = scalar(database, "SELECT now()")
        wait_for(database, PAUSED_RUNS_AFTER + " AND job_name = 'job-00'", t=resumed_at)

        everything = cronlock("pause", "--all", "--reason", "incident 42", cwd=tmp_path, **env)
        assert everything.returncode == 0, everything.stderr
        wait_for(
            database,
            "SELECT count(DISTINCT job_name) = 2 FROM job_execution "
            "WHERE status = 'SKIPPED' AND error_message = 'paused (all jobs): incident 42'",
        )
        assert "all jobs resumed" in cronlock("resume", "--all", cwd=tmp_path, **env).stdout
    finally:
        results = [stop(w) for w in workers]
    assert [code for code, _ in results] == [0, 0]
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}


JOBS = """
import os
from app.job import job

@job("flaky", schedule="0 0 1 1 *")
def flaky(ctx):
    if not os.path.exists(os.environ["FIXED_FLAG"]):
        raise RuntimeError("provider down")
    return {"attempt": ctx.attempt}

JOBS = [flaky]
"""


def test_retry_re_runs_a_failed_instant_and_clears_the_dead_letter(
    database: Database, db_url: str, tmp_path: Path
):
    module = tmp_path / "retry_jobs.py"
    module.write_text(JOBS)
    flag = tmp_path / "fixed"
    env = {"DATABASE_URL": db_url, "JOBS_MODULE": str(module), "FIXED_FLAG": str(flag)}
    register_before_latest(database, {"flaky": "0 0 1 1 *"})
    assert cronlock("worker", "--once", cwd=tmp_path, **env).returncode == 1
    failed = json.loads(cronlock("history", "--failed", "--json", cwd=tmp_path, **env).stdout)
    assert [(f["job"], f["attempt"]) for f in failed] == [("flaky", 1)]
    run_id = failed[0]["id"]

    still_failing = cronlock("retry", str(run_id), cwd=tmp_path, **env)
    assert still_failing.returncode == 1
    assert "FAILURE" in still_failing.stdout
    stale = cronlock("retry", str(run_id), cwd=tmp_path, **env)
    assert stale.returncode == 2
    dead_letter = json.loads(cronlock("history", "--failed", "--json", cwd=tmp_path, **env).stdout)
    [second] = dead_letter  # only the latest attempt: the one retry takes
    assert second["attempt"] == 2
    assert f"already has attempt 2 (run {second['id']}, FAILURE); retry run {second['id']}" in (
        stale.stderr
    )

    flag.write_text("fixed")
    latest = json.loads(cronlock("history", "--failed", "--json", cwd=tmp_path, **env).stdout)[0]
    fixed = cronlock("retry", str(latest["id"]), cwd=tmp_path, **env)
    assert fixed.returncode == 0, fixed.stderr
    assert "SUCCESS" in fixed.stdout
    runs = json.loads(cronlock("history", "flaky", "--json", cwd=tmp_path, **env).stdout)
    assert [(r["attempt"], r["status"], r["trigger"]) for r in reversed(runs)] == [
        (1, "FAILURE", "schedule"),
        (2, "FAILURE", "manual"),
        (3, "SUCCESS", "manual"),
    ]
    assert json.loads(cronlock("history", "--failed", "--json", cwd=tmp_path, **env).stdout) == []
    assert cronlock("history", "--failed", cwd=tmp_path, **env).stdout == "no runs match\n"
    settled = cronlock("retry", str(run_id), cwd=tmp_path, **env)
    assert settled.returncode == 2
    assert "(run {}, SUCCESS); there is nothing left to retry".format(runs[0]["id"]) in (
        settled.stderr
    )


def test_steering_commands_refuse_bad_input(db_url: str, tmp_path: Path):
    module = tmp_path / "retry_jobs.py"
    module.write_text(JOBS)
    env = {"DATABASE_URL": db_url, "JOBS_MODULE": str(module), "FIXED_FLAG": str(tmp_path / "x")}
    cases = [
        (["pause", "flaky"], "--reason"),
        (["pause", "--reason", "x"], "name one JOB to pause, or pass --all"),
        (["pause", "flakey", "--reason", "x"], "did you mean flaky"),
        (["resume"], "name one JOB to resume, or pass --all"),
        (["retry", "999"], "no run has id 999"),
        (["retry", "abc"], "not a positive whole number"),
    ]
    for args, message in cases:
        result = cronlock(*args, cwd=tmp_path, **env)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
    cronlock("worker", "--once", cwd=tmp_path, **env)
    cronlock("pause", "flaky", "--reason", "x", cwd=tmp_path, **env)
    skipped = cronlock("run", "flaky", cwd=tmp_path, **env)
    assert (skipped.returncode, skipped.stdout.strip()) == (0, "flaky skipped: paused: x")
