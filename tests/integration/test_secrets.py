"""No secret is stored: skip reasons, results, pause reasons and errors are masked first."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from app.job import Job
from app.store.database import Database
from tests.integration.cli_helpers import cronlock
from tests.integration.helpers import rows
from tests.integration.test_worker import NOON, make_worker

SECRET = "hunter2-very-secret"
ENVIRON = {"PAYMENTS_API_TOKEN": SECRET}


def test_a_pre_check_reason_and_a_result_are_stored_masked(database: Database):
    jobs = [
        Job(
            name="checked",
            body=lambda ctx: None,
            schedule="* * * * *",
            pre_check=lambda ctx: f"upstream said: token {SECRET} is expired",
        ),
        Job(
            name="leaky", body=lambda ctx: {"used": SECRET, SECRET: [SECRET]}, schedule="* * * * *"
        ),
    ]
    make_worker(database, jobs, environ=ENVIRON).tick(NOON)
    skipped, succeeded = rows(database)
    assert skipped.error_message == "upstream said: token *** is expired"
    assert succeeded.result == {"used": "***", "***": ["***"]}


def test_a_pre_check_that_returns_no_string_fails_the_run(database: Database):
    jobs = [Job(name="odd", body=lambda ctx: None, schedule="* * * * *", pre_check=lambda ctx: 42)]
    make_worker(database, jobs).tick(NOON)
    [row] = rows(database)
    assert row.status == "FAILURE"
    assert row.error_message == (
        "pre-check raised TypeError: a pre-check returns a reason to skip (str) or None to run, "
        "not int"
    )


JOBS = """
from app.job import job

@job("sync", schedule="0 0 1 1 *")
def sync(ctx):
    return None

JOBS = [sync]
"""


def test_a_pause_reason_is_stored_masked(db_url: str, tmp_path: Path):
    jobs_file = tmp_path / "secret_jobs.py"
    jobs_file.write_text(JOBS)
    env = {"DATABASE_URL": db_url, "JOBS_MODULE": str(jobs_file), **ENVIRON}
    paused = cronlock("pause", "sync", "--reason", f"rotating {SECRET}", cwd=tmp_path, **env)
    assert paused.returncode == 0, paused.stderr
    assert SECRET not in paused.stdout
    listing = cronlock("jobs", cwd=tmp_path, **env)
    assert SECRET not in listing.stdout
    assert "rotating ***" in listing.stdout


def test_a_password_in_the_url_parameters_is_never_printed(db_url: str, tmp_path: Path):
    url = (
        make_url(db_url)
        .update_query_dict({"password": "not-the-real-one-42"})
        .render_as_string(hide_password=False)
    )
    checked = cronlock("check", cwd=tmp_path, DATABASE_URL=url)
    assert "not-the-real-one-42" not in checked.stdout + checked.stderr
