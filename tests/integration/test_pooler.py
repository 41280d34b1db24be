"""cronlock behind PgBouncer, in session and in transaction pooling.

Each test runs against a PgBouncer of its own, in front of the test's database:
the multi-process race, a takeover with its late finish fenced, transactional
jobs (one killed mid-body), and the `cronlock run` claim path. Transaction mode runs with
DATABASE_POOLER=transaction, as docs/operations.md says it must.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from app.core.outcomes import RunStatus
from app.errors import DatabaseError
from app.job import Job, RunContext
from app.store.claiming import ensure_jobs
from app.store.database import Database
from tests.integration import pooler as pgbouncer
from tests.integration.cli_helpers import cronlock
from tests.integration.faults import (
    invariants,
    scalar,
    start_worker,
    stop,
    wait_for,
    wait_for_log,
    write_jobs,
)
from tests.integration.helpers import register_before_latest, rows, worker_for
from tests.integration.test_race import race

ROUNDS = 10


@pytest.fixture(scope="session")
def pgbouncer_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian's pgbouncer, installed once per session when missing; else the tests skip."""
    found = pgbouncer.find_pgbouncer()
    if found is None:
        reason = pgbouncer.install_pgbouncer(tmp_path_factory.mktemp("apt") / "pgbouncer.log")
        found = pgbouncer.find_pgbouncer()
        if found is None:
            pytest.skip(f"PgBouncer tests need Debian's pgbouncer: {reason or 'not found'}")
    return found


@pytest.fixture(params=["session", "transaction"])
def pooler(request, pgbouncer_path: str, db_url: str, tmp_path: Path) -> Iterator[pgbouncer.Pooler]:
    """A PgBouncer in front of this test's database, in each pool mode."""
    with pgbouncer.start_pgbouncer(pgbouncer_path, db_url, request.param, tmp_path) as running:
        yield running


@pytest.fixture
def pooled(pooler: pgbouncer.Pooler) -> Iterator[Database]:
    """A Database through the pooler, configured as DATABASE_POOLER says."""
    database = Database(pooler.url, pooler=pooler.mode)
    yield database
    database.dispose()


def test_exactly_one_process_wins_each_instant_through_the_pooler(database, pooler):
    ensure_jobs(database, ["contested"])
    race(pooler.url, wait_for_lock=True, rounds=ROUNDS, pooler=pooler.mode)
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}
    assert scalar(database, "SELECT count(*) FROM job_execution WHERE status = 'SUCCESS'") == ROUNDS


def test_a_stopped_workers_run_is_taken_over_and_its_late_finish_fenced(database, pooler, tmp_path):
    through = {"DATABASE_POOLER": pooler.mode}
    paused = start_worker(tmp_path, pooler.url, FAULT_SLEEP_S="1", **through)
    rival = None
    try:
        run_id = wait_for(
            database,
            "SELECT id FROM job_execution WHERE status = 'RUNNING' AND worker_id LIKE :w",
            w=f"%:{paused.pid}",
        )
        paused.send_signal(signal.SIGSTOP)  # as good as dead: no heartbeat, no finish
        rival = start_worker(tmp_path, pooler.url, FAULT_SLEEP_S="0", **through)
        wait_for(
            database,
            "SELECT 1 FROM job_execution WHERE id = :id AND status = 'FAILURE' "
            "AND error_message LIKE 'abandoned:%'",
            id=run_id,
        )
        wait_for(
            database, "SELECT 1 FROM job_execution WHERE status = 'SUCCESS' AND id > :id", id=run_id
        )
        paused.send_signal(signal.SIGCONT)
        wait_for_log(paused, "no longer ours")  # its late finish was refused
    finally:
        paused.send_signal(signal.SIGCONT)
        codes, logs = zip(*(stop(w) for w in (paused, rival) if w is not None), strict=True)
    assert codes == (0, 0), "".join(logs)
    assert (
        scalar(database, "SELECT status FROM job_execution WHERE id = :id", id=run_id) == "FAILURE"
    )
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}


NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _booking(fail: bool):
    def body(ctx: RunContext):
        with ctx.session() as session:
            session.execute(text("INSERT INTO ledger VALUES (:at, 100)"), {"at": ctx.scheduled_for})
            session.commit()  # must not commit the run's transaction
        if fail:
            raise RuntimeError("after the write")

    return body


@pytest.mark.parametrize("fail", [False, True], ids=["succeeds", "fails"])
def test_a_transactional_jobs_writes_commit_with_its_success_through_the_pooler(
    database, pooled, fail
):
    with database.transaction() as session:
        session.execute(text("CREATE TABLE ledger (instant timestamptz PRIMARY KEY, amount int)"))
    jobs = [Job(name="book", body=_booking(fail), schedule="* * * * *", transactional=True)]
    worker_for(pooled, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)).tick(NOON)
    [run] = rows(database)
    booked = scalar(database, "SELECT count(*) FROM ledger")
    assert (run.status, booked) == ((RunStatus.FAILURE, 0) if fail else (RunStatus.SUCCESS, 1))


def test_a_transactional_run_killed_mid_body_leaves_nothing_through_the_pooler(
    database, pooler, tmp_path
):
    """PgBouncer must end the server side of a transaction whose client vanished."""
    with database.transaction() as session:
        session.execute(text("CREATE TABLE ledger (instant timestamptz PRIMARY KEY, amount int)"))
    common = {
        "FAULT_TRANSACTIONAL": "1",
        "FAULT_SCHEDULE": "0 0 1 1 *",
        "DATABASE_POOLER": pooler.mode,
    }
    register_before_latest(database, {"book": common["FAULT_SCHEDULE"]})
    doomed = start_worker(tmp_path, pooler.url, "--once", FAULT_SLEEP_S="30", **common)
    try:
        run_id = wait_for(
            database,
            "SELECT id FROM job_execution WHERE status = 'RUNNING' AND worker_id LIKE :w",
            w=f"%:{doomed.pid}",
        )
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    wait_for(
        database,
        "SELECT now() - heartbeat_at > interval '2 seconds' FROM job_execution WHERE id = :id",
        id=run_id,
    )
    retry = start_worker(tmp_path, pooler.url, "--once", FAULT_SLEEP_S="0", **common)
    try:
        retry.wait(timeout=60)
    finally:
        code, log = stop(retry)
    assert code == 0, log
    assert scalar(database, "SELECT count(*) FROM ledger") == 1
    statuses = [r.status for r in rows(database)]
    assert statuses == ["FAILURE", "SUCCESS"]


def test_cronlock_run_claims_through_the_pooler(database, pooler, tmp_path):
    result = cronlock(
        "run",
        "job-00",
        cwd=tmp_path,
        DATABASE_URL=pooler.url,
        DATABASE_POOLER=pooler.mode,
        JOBS_MODULE=str(write_jobs(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert "of job-00: SUCCESS" in result.stdout
    assert [r.status for r in rows(database)] == ["SUCCESS"]


@pytest.mark.parametrize("pooler", ["transaction"], indirect=True)
def test_prepared_statements_are_off_in_transaction_mode_and_their_loss_is_explained(pooler):
    """psycopg prepares a statement from its fifth execution; PgBouncer before 1.21 runs
    the next one on whichever server connection is free, where it does not exist."""
    for setting, expected in (("none", "set DATABASE_POOLER=transaction"), ("transaction", None)):
        first, second = Database(pooler.url, pooler=setting), Database(pooler.url, pooler=setting)
        try:
            for n in range(6):
                with first.connection() as conn:
                    conn.execute(text("SELECT :n"), {"n": n})
            with second.connection() as holding:  # takes the server connection first used
                holding.execute(text("SELECT 1"))
                if expected is None:
                    with first.connection() as conn:
                        assert conn.execute(text("SELECT :n"), {"n": 7}).scalar() == 7
                else:
                    with pytest.raises(DatabaseError, match=expected), first.connection() as conn:
                        conn.execute(text("SELECT :n"), {"n": 7})
        finally:
            first.dispose()
            second.dispose()
