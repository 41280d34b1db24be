"""Whatever a body or a pre-check raises is its run's outcome; only cronlock's own stops stop more."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from app.job import Job
from app.store.database import Database
from tests.integration.cli_helpers import start_cronlock
from tests.integration.helpers import rows, wait_until
from tests.integration.test_worker import NOON, make_worker


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def _raise(error: BaseException):
    def body(ctx):
        raise error

    return body


@pytest.mark.parametrize(
    ("error", "stored"),
    [
        (KeyboardInterrupt(), "exited: KeyboardInterrupt()"),
        (SystemExit(0), "exited: SystemExit(0)"),
        (GeneratorExit(), "exited: GeneratorExit()"),
        (UnprintableError(), "UnprintableError: (its message could not be read)"),
    ],
    ids=["KeyboardInterrupt", "SystemExit", "GeneratorExit", "unprintable"],
)
def test_a_body_that_raises_anything_fails_and_the_tick_goes_on(
    database: Database, error: BaseException, stored: str
):
    ran: list[str] = []
    jobs = [
        Job(name="rude", body=_raise(error), schedule="* * * * *"),
        Job(name="next", body=lambda ctx: ran.append("next"), schedule="* * * * *"),
    ]
    report = make_worker(database, jobs).tick(NOON)
    assert ran == ["next"]
    assert report.failed == 1
    assert [(r.job_name, r.status, r.error_message) for r in rows(database)] == [
        ("rude", "FAILURE", stored),
        ("next", "SUCCESS", None),
    ]


def test_a_pre_check_that_exits_fails_its_run_and_the_tick_goes_on(database: Database):
    def exits(ctx):
        sys.exit(3)

    ran: list[str] = []
    jobs = [
        Job(
            name="checked",
            body=lambda ctx: ran.append("body"),
            schedule="* * * * *",
            pre_check=exits,
        ),
        Job(name="next", body=lambda ctx: ran.append("next"), schedule="* * * * *"),
    ]
    make_worker(database, jobs).tick(NOON)
    assert ran == ["next"]
    assert [(r.job_name, r.status, r.error_message) for r in rows(database)] == [
        ("checked", "FAILURE", "pre-check raised SystemExit: 3"),
        ("next", "SUCCESS", None),
    ]


def test_a_timeout_the_body_swallows_still_ends_the_run_failure(database: Database):
    def swallows(ctx):
        try:
            while True:  # bounded by the alarm below: the test's own timeout catches a miss
                signal.pause()
        except BaseException:  # noqa: S110 - the point of the test
            pass
        return {"done": True}

    job = Job(name="stubborn", body=swallows, schedule="* * * * *", timeout_s=0.2)
    make_worker(database, [job]).tick(NOON)
    [row] = rows(database)
    assert (row.status, row.error_message, row.result) == (
        "FAILURE",
        "timed out after 0.2s; the body caught it and returned",
        None,
    )


SLEEPY = """
import time
from app.job import job

@job("sleepy", schedule="0 0 1 1 *")
def sleepy(ctx):
    time.sleep(60)

JOBS = [sleepy]
"""


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cronlock_run_records_failure_when_stopped_by_a_signal(
    database: Database, db_url: str, tmp_path: Path, sent: signal.Signals, code: int
):
    jobs_file = tmp_path / "sleepy_jobs.py"
    jobs_file.write_text(SLEEPY)
    command = start_cronlock(
        "run", "sleepy", cwd=tmp_path, DATABASE_URL=db_url, JOBS_MODULE=str(jobs_file)
    )
    try:
        wait_until(
            lambda: [r.status for r in rows(database)] == ["RUNNING"],
            what="the manual run to start",
        )
        command.send_signal(sent)
        _, stderr = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate(timeout=30)
    assert command.returncode == code, stderr
    [row] = rows(database)
    assert (row.status, row.error_message) == ("FAILURE", f"interrupted by {sent.name}")
    assert f"interrupted by {sent.name}" in stderr


def test_a_body_that_ignores_its_timeout_is_given_up_and_its_job_freed(
    database: Database, db_url: str
):
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    seen: list[str] = []

    def stubborn(ctx):
        # Catches every interrupt and goes on; it watches its own row from outside
        # cronlock, and stops (bounded) once the row says it was given up.
        with psycopg.connect(libpq, autocommit=True) as conn:
            for _ in range(600):
                try:
                    status = conn.execute(
                        "SELECT status FROM job_execution WHERE id = %s", (ctx.run_id,)
                    ).fetchone()[0]
                    if status != "RUNNING":
                        seen.append(status)
                        break
                    time.sleep(0.05)
                except BaseException:  # noqa: S112 - the point of the test
                    continue
        return {"stopped": "late"}

    job = Job(name="stubborn", body=stubborn, schedule="* * * * *", timeout_s=0.2)
    make_worker(database, [job]).tick(NOON)
    assert seen == ["FAILURE"]  # recorded while the body was still running
    [row] = rows(database)
    assert row.status == "FAILURE"
    assert row.error_message == (
        "timed out after 0.2s and did not stop within 1s more; "
        "given up while its body may still be running"
    )
    assert row.result is None
