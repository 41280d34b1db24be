"""One tick of many no-op jobs: one worker, then several worker processes sharing it.

Every worker's clock is pinned to the tick's instant: each ``* * * * * *`` instant
expires a second later, so a real clock would expire the tail of any tick longer
than a second instead of measuring it. The processes are released together by a
barrier and each settles the tick the way ``cronlock worker --once`` does: one
pass over the jobs, then passes over those another replica held, on the worker's
own poll delays, until none is left. Exactly-once is checked from the table.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from typing import Any

import psycopg

from app.config import Settings
from app.job import Job, RunContext
from app.registry import JobRegistry, configure
from app.runtime.worker import Worker
from app.store.database import Database
from app.store.facade import Store
from benchmarks.server import CpuTicks, cpu_ticks

TICK_JOBS = 1000
TICK_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROWS = "SELECT status, count(*) FROM job_execution GROUP BY 1"
DUPLICATES = (
    "SELECT count(*) FROM (SELECT job_name, scheduled_for FROM job_execution"
    " WHERE status = 'SUCCESS' GROUP BY 1, 2 HAVING count(*) > 1) AS d"
)


def _noop(_: RunContext) -> None:
    """A body that does nothing, so a run costs only what cronlock adds."""


def _worker(url: str, index: int) -> Worker:
    # The pinned clock is months off the database's: silence the skew warning.
    settings = Settings.from_env({"MAX_CLOCK_SKEW_SECONDS": str(10**9)})
    jobs = [Job(name=f"noop-{i:04d}", body=_noop, schedule="* * * * * *") for i in range(TICK_JOBS)]
    database = Database(url, application_name=f"bench-tick-{index}")
    configured = configure(JobRegistry(jobs), settings)
    return Worker(
        Store(database), configured, settings, worker_id=f"bench:{index}", clock=lambda: TICK_NOW
    )


def _settle(worker: Worker) -> int:
    """Tick, then retry what other replicas held, as `run_once` does; return runs done here."""
    report = worker.tick(TICK_NOW)
    report.add(worker.settle_pending())
    return len(report.outcomes)


def _tick_process(url: str, index: int, barrier: Barrier, results: Any) -> None:
    worker = _worker(url, index)
    worker.start(now=TICK_NOW - timedelta(seconds=1))
    barrier.wait()
    started = time.perf_counter()
    runs = _settle(worker)
    results.put((index, time.perf_counter() - started, runs))
    worker.store.database.dispose()


def _table(libpq_url: str) -> dict[str, Any]:
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        rows = {str(status): int(n) for status, n in conn.execute(ROWS)}
        duplicates_row = conn.execute(DUPLICATES).fetchone()
        conn.execute("TRUNCATE job_execution")
    duplicates = int(duplicates_row[0]) if duplicates_row else -1
    ok = rows.get("SUCCESS") == TICK_JOBS and len(rows) == 1 and duplicates == 0
    return {"rows_by_status": rows, "duplicate_instants": duplicates, "exactly_once": ok}


def _tick_result(
    libpq_url: str, tick_s: float, cpu: tuple[CpuTicks, CpuTicks], runs_by_worker: list[int]
) -> dict[str, Any]:
    """One tick's figures, and what the table says about it (then emptied for the next)."""
    busy, stolen = cpu[0].shares(cpu[1])
    return {
        "jobs": TICK_JOBS,
        "tick_s": tick_s,
        "machine_busy": busy,
        "machine_stolen": stolen,
        "per_job_ms": tick_s * 1000 / TICK_JOBS,
        "runs_by_worker": runs_by_worker,
        **_table(libpq_url),
    }


def bench_one_worker(url: str, libpq_url: str) -> dict[str, Any]:
    """worker.start() and one tick of TICK_JOBS jobs in this process, each timed alone."""
    worker = _worker(url, 0)
    try:
        started = time.perf_counter()
        worker.start(now=TICK_NOW - timedelta(seconds=1))
        start_s, started, cpu = time.perf_counter() - started, time.perf_counter(), cpu_ticks()
        runs = _settle(worker)
        tick_s, cpu_after = time.perf_counter() - started, cpu_ticks()
    finally:
        worker.store.database.dispose()
    return {"start_s": start_s, **_tick_result(libpq_url, tick_s, (cpu, cpu_after), [runs])}


def bench_processes(url: str, libpq_url: str, processes: int) -> dict[str, Any]:
    """The same tick settled by `processes` worker processes released together."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_tick_process, args=(url, i, barrier, results))
        for i in range(processes)
    ]
    for process in workers:
        process.start()
    barrier.wait(timeout=120)
    started, cpu = time.perf_counter(), cpu_ticks()
    finished = [results.get(timeout=120) for _ in workers]
    wall_s, cpu_after = time.perf_counter() - started, cpu_ticks()
    for process in workers:
        process.join(timeout=30)
    runs_by_worker = [runs for _, _, runs in sorted(finished)]
    return {
        "processes": processes,
        **_tick_result(libpq_url, wall_s, (cpu, cpu_after), runs_by_worker),
    }


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round of one shape (by tick time), with the min and max, and every round."""
    ordered = sorted(rounds, key=lambda r: float(r["tick_s"]))
    median = ordered[len(ordered) // 2]
    return {
        **median,
        "tick_min_s": ordered[0]["tick_s"],
        "tick_max_s": ordered[-1]["tick_s"],
        "exactly_once": all(r["exactly_once"] for r in rounds),
        "rounds": rounds,
    }
