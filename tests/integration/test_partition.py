"""A worker cut off from PostgreSQL mid-body, and a worker that can still reach it.

The cut-off worker's connection runs over a cable the test silences (no FIN, no
RST). Its body must hear `should_stop()` before the other worker may take the
run over, and its late finish must be fenced. Both bodies write their start and
stop times to one file, so the window in which both ran is measured, not assumed.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from app.store.database import Database
from app.store.migrations import upgrade_to_head
from tests.integration.conftest import database_url
from tests.integration.faults import (
    FAST_LEASES,
    invariants,
    private_server,
    scalar,
    start_worker,
    stop,
    wait_for,
    wait_for_log,
)
from tests.integration.helpers import wait_until
from tests.integration.network import CuttableNetwork, namespaces_available, through

PARTITION_JOBS = """
import os
import time

from app.job import job

BODY_LOG = os.environ["BODY_LOG"]
SLEEP_S = float(os.environ["PARTITION_SLEEP_S"])


def _note(*words):
    fd = os.open(BODY_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (" ".join(str(w) for w in words) + "\\n").encode())
    finally:
        os.close(fd)


def _long(ctx):
    _note("start", os.getpid(), time.time())
    deadline = time.monotonic() + SLEEP_S
    while time.monotonic() < deadline and not ctx.should_stop():
        time.sleep(0.01)
    _note("stop", os.getpid(), time.time(), "should_stop" if ctx.should_stop() else "done")
    return {"slept": True}


JOBS = [job("long", schedule="* * * * * *")(_long)]
"""

STALE_S = float(FAST_LEASES["STALE_JOB_THRESHOLD_SECONDS"])
HEARTBEAT_S = float(FAST_LEASES["HEARTBEAT_INTERVAL_SECONDS"])


@pytest.fixture(scope="module")
def own_server(tmp_path_factory) -> Iterator[object]:
    """A PostgreSQL server only this module uses: its network is cut."""
    with private_server(tmp_path_factory.mktemp("partition")) as server:
        yield server


def _notes(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.skipif(
    not namespaces_available(), reason="cutting a network needs Linux network namespaces (root)"
)
def test_a_partitioned_worker_stops_trusting_its_run_before_another_takes_it_over(
    own_server, tmp_path
):
    admin_url = own_server.get_uri(database="postgres")
    name = f"cronlock_partition_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    direct_url = database_url(admin_url, name)
    database = Database(direct_url)
    upgrade_to_head(database)
    jobs_file = tmp_path / "partition_jobs.py"
    jobs_file.write_text(PARTITION_JOBS)
    body_log = tmp_path / "bodies.log"
    common = {"JOBS_MODULE": str(jobs_file), "BODY_LOG": str(body_log)}
    with CuttableNetwork(admin_url) as network:
        cut_url = through(
            direct_url,
            network.port,
            network.address,
            keepalives_idle="1",
            keepalives_interval="1",
            keepalives_count="2",
            tcp_user_timeout="3000",
        )
        cut_off = start_worker(
            tmp_path, cut_url, prefix=network.inside([]), PARTITION_SLEEP_S="30", **common
        )
        rival = None
        try:
            run_id = wait_for(
                database,
                "SELECT id FROM job_execution WHERE status = 'RUNNING' AND worker_id LIKE :w",
                w=f"%:{cut_off.pid}",
            )
            rival = start_worker(tmp_path, direct_url, PARTITION_SLEEP_S="0.5", **common)
            wait_for(  # the rival is up and sees the run as taken
                database,
                "SELECT 1 FROM job_execution WHERE worker_id LIKE :w",
                w=f"%:{rival.pid}",
            )
            network.cut()
            cut_at = time.time()
            wait_for(
                database,
                "SELECT 1 FROM job_execution WHERE id = :id AND status = 'FAILURE' "
                "AND error_message LIKE 'abandoned:%'",
                id=run_id,
            )
            wait_for(
                database,
                "SELECT 1 FROM job_execution WHERE status = 'SUCCESS' AND id > :id "
                "AND worker_id LIKE :w",
                id=run_id,
                w=f"%:{rival.pid}",
            )
            wait_for_log(cut_off, "lost its lease")
            network.heal()
            # Its finish ends one of two ways, neither a write: fenced off, once the
            # cable is back, or given up, if it is still cut when the run is stale.
            wait_until(
                lambda: "no longer ours" in cut_off.log() or "gave up recording" in cut_off.log(),
                timeout_s=30,
                what="the cut-off worker's finish to end",
            )
        finally:
            results = [stop(w) for w in (cut_off, rival) if w is not None]
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    assert (
        scalar(database, "SELECT status FROM job_execution WHERE id = :id", id=run_id) == "FAILURE"
    )
    notes = _notes(body_log)
    cut_pid, rival_pid = str(cut_off.pid), str(rival.pid)
    stopped = next(n for n in notes if n[0] == "stop" and n[1] == cut_pid)
    assert stopped[3] == "should_stop", stopped
    rival_start = next(
        float(n[2]) for n in notes if n[0] == "start" and n[1] == rival_pid and float(n[2]) > cut_at
    )
    figures = {
        "cut_to_should_stop_s": round(float(stopped[2]) - cut_at, 3),
        "cut_to_takeover_body_s": round(rival_start - cut_at, 3),
        # Positive: both bodies ran for that long; negative: the gap between them.
        "both_bodies_ran_s": round(float(stopped[2]) - rival_start, 3),
        "stale_threshold_s": STALE_S,
        "heartbeat_interval_s": HEARTBEAT_S,
    }
    print("partition figures:", json.dumps(figures))
    report = os.environ.get("CRONLOCK_FAILOVER_REPORT")
    if report:
        with open(report, "a") as out:
            out.write(json.dumps(figures) + "\n")
    # should_stop turns true one heartbeat interval before the run may be taken over.
    assert figures["cut_to_should_stop_s"] <= STALE_S - HEARTBEAT_S + 0.5
    assert figures["both_bodies_ran_s"] < 0
    assert invariants(database) == {"duplicate_success": 0, "running": 0, "overlapping": 0}
    database.dispose()
