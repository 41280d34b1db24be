"""The soak: 4 workers, 20 jobs every second, 2 minutes, random SIGKILLs and restarts.

Checked from the table afterwards: no two SUCCESS for a (job, instant); no two
runs of a job overlapping in time; every row terminal; every instant of the
window accounted for (SUCCESS, FAILURE, SKIPPED or MISSED).

CRONLOCK_SOAK_SECONDS changes the length (default 120); CRONLOCK_SOAK_REPORT names
a JSON file to write the figures to.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from app.store.database import Database
from tests.integration.faults import invariants, start_worker, stop, wait_for

WORKERS = 4
JOBS = 20
SOAK_S = float(os.environ.get("CRONLOCK_SOAK_SECONDS", "120"))
QUIET_END_S = 6  # no kills in the last seconds, so every abandoned run is recovered
EDGE_S = 3  # instants this close to the start or the end are not counted
SEED = int(os.environ.get("CRONLOCK_SOAK_SEED", "20261123"))

UNACCOUNTED = """
SELECT count(*) FROM generate_series(:first, :last, interval '1 second') AS instant
CROSS JOIN (SELECT name FROM job WHERE name LIKE 'job-%') AS j
WHERE NOT EXISTS (
    SELECT 1 FROM job_execution e
    WHERE e.job_name = j.name AND e.scheduled_for = instant
      AND e.status IN ('SUCCESS', 'FAILURE', 'SKIPPED', 'MISSED')
)
"""


@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 120)
def test_soak_with_random_kills(database: Database, db_url: str, tmp_path: Path):
    rng = random.Random(SEED)
    variables = {"FAULT_JOBS": str(JOBS), "FAULT_SLEEP_S": "0.02", "LOG_LEVEL": "WARNING"}
    workers = [start_worker(tmp_path, db_url, **variables) for _ in range(WORKERS)]
    wait_for(database, "SELECT count(*) >= :n FROM job_execution", n=JOBS)
    started = time.monotonic()
    first = _db_now(database) + _seconds(EDGE_S)
    kills, restarts = 0, 0
    while time.monotonic() - started < SOAK_S - QUIET_END_S:
        time.sleep(rng.uniform(2.0, 5.0))  # the pace of the chaos, not a synchronisation
        victim = rng.randrange(WORKERS)
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait(timeout=10)
        kills += 1
        time.sleep(rng.uniform(0.2, 1.5))
        workers[victim] = start_worker(tmp_path, db_url, **variables)
        restarts += 1
    time.sleep(QUIET_END_S)
    last = _db_now(database) - _seconds(EDGE_S)
    results = [stop(w) for w in workers]
    assert [code for code, _ in results] == [0] * WORKERS, results[0][1][-3000:]

    checks = invariants(database)
    with database.transaction() as session:
        unaccounted = session.execute(text(UNACCOUNTED), {"first": first, "last": last}).scalar()
        by_status = dict(
            session.execute(
                text("SELECT status, count(*) FROM job_execution GROUP BY status")
            ).all()
        )
        missed_reasons = dict(
            session.execute(
                text(
                    "SELECT split_part(error_message, ':', 2), count(*) FROM job_execution "
                    "WHERE status = 'MISSED' GROUP BY 1"
                )
            ).all()
        )
        abandoned = session.execute(
            text("SELECT count(*) FROM job_execution WHERE error_message LIKE 'abandoned:%'")
        ).scalar()
    instants = int((last - first).total_seconds() + 1) * JOBS
    figures = {
        "seconds": SOAK_S,
        "workers": WORKERS,
        "jobs": JOBS,
        "seed": SEED,
        "instants_checked": instants,
        "runs_by_status": by_status,
        "missed_by_reason": missed_reasons,
        "abandoned_runs_recovered": abandoned,
        "kills": kills,
        "restarts": restarts,
        "duplicate_success": checks["duplicate_success"],
        "overlapping_runs": checks["overlapping"],
        "left_running": checks["running"],
        "unaccounted_instants": unaccounted,
    }
    print(json.dumps(figures))
    if report := os.environ.get("CRONLOCK_SOAK_REPORT"):
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
    assert kills >= SOAK_S // 10
    assert checks == {"duplicate_success": 0, "running": 0, "overlapping": 0}
    assert unaccounted == 0


def _db_now(database: Database):
    with database.transaction() as session:
        return session.execute(text("SELECT date_trunc('second', now())")).scalar()


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)
