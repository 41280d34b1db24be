"""Every benchmark in one bounded run on one PostgreSQL server: ``make bench``.

Writes ``docs/benchmarks.md`` (tables and a chart), ``docs/benchmarks.png`` and the
raw figures in ``docs/benchmarks.json``, and prints the Markdown. The server is
``BENCH_DATABASE_URL`` (loopback or a Unix socket only) or an embedded PostgreSQL
in a temporary folder; every measure works in a scratch database of its own. An
alarm ends a run that goes past ``TIME_LIMIT_S``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from app.config import normalize_database_url
from app.store.database import Database
from app.store.migrations import upgrade_to_head
from benchmarks import console, http_job, overhead, report, ticks
from benchmarks.peers.harness import (
    TOOLS,
    IdleWorker,
    Scenario,
    measure_idle,
    run_scenario,
    setup_tool,
    workers,
)
from benchmarks.server import cpu_ticks, environment, postgres_server, scratch_database

DOCS = Path(__file__).resolve().parent.parent / "docs"
TIME_LIMIT_S = 18 * 60
PEER_SHAPES = ((1, 20), (4, 20), (1, 200), (4, 200))  # (worker processes, jobs)
PEER_PERIODS = int(os.environ.get("BENCH_PEER_PERIODS", "10"))
DELAY_PERIODS = 100  # p99 by nearest rank is then the second-highest delay, not the highest
IDLE_WINDOW_S = 60.0
STARTUP_RUNS = 5
HISTORY_ROWS = int(os.environ.get("BENCH_HISTORY_ROWS", "1000000"))
TICK_PROCESSES = (2, 4)
TICK_ROUNDS = 3
CONSOLE_IDLE = "cronlock_console"


def _migrate(libpq_url: str) -> None:
    database = Database(normalize_database_url(libpq_url), application_name="bench-migrate")
    try:
        upgrade_to_head(database)
    finally:
        database.dispose()


def bench_start_delay(admin_url: str, folder: Path) -> dict[str, Any]:
    """One worker, one every-second job: scheduled instant to the body's first line."""
    return run_scenario(admin_url, Scenario("cronlock", 1, 1, periods=DELAY_PERIODS), folder)


def bench_startup(admin_url: str, folder: Path) -> dict[str, Any]:
    """Process start to READY=1 (schema checked, jobs registered) on an external database."""
    seconds = []
    with scratch_database(
        admin_url, "bench_startup", lambda url: setup_tool("cronlock", url)
    ) as url:
        for _ in range(STARTUP_RUNS):
            started = time.perf_counter()
            group = workers(
                "cronlock",
                url,
                1,
                jobs=20,
                every="year",
                out=folder / "startup.out",
                log=folder / "startup.log",
            )
            with group:
                seconds.append(time.perf_counter() - started)
    return {
        "runs": STARTUP_RUNS,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
    }


def bench_core(admin_url: str, folder: Path) -> dict[str, Any]:
    """Per-run overhead against raw psycopg, round trips, then with and without a long history."""
    with (
        scratch_database(admin_url, "bench_cronlock_core", _migrate) as libpq_url,
        scratch_database(admin_url, "bench_cronlock_history", _migrate) as full_url,
    ):
        database = Database(normalize_database_url(libpq_url), application_name="bench-runs")
        full = Database(normalize_database_url(full_url), application_name="bench-history")
        try:
            with psycopg.connect(libpq_url, autocommit=True) as raw:
                core = {"overhead": overhead.compare(database, raw, overhead.BASE)}
                core["round_trips"] = overhead.count_round_trips(database, raw, folder)
                # The baseline keeps figure 1's few thousand runs, analysed: an emptied
                # table's stale statistics make PostgreSQL scan it as it grows.
                raw.execute("ANALYZE job_execution")
            filled_s = overhead.fill_history(full_url, HISTORY_ROWS, ("runs-cronlock", "runs-raw"))
            core["history"] = {"rows": HISTORY_ROWS, "fill_s": filled_s}
            core["history"] |= overhead.compare_history(database, full, overhead.BASE)
        finally:
            database.dispose()
            full.dispose()
    return core


def bench_idle(admin_url: str, folder: Path) -> dict[str, Any]:
    """Every tool's worker idle, and cronlock's again serving the console that nobody asks."""
    port = console.free_port()
    served = {"METRICS_PORT": str(port), "METRICS_HOST": console.HOST}
    idle = {tool: IdleWorker(tool) for tool in TOOLS}
    idle[CONSOLE_IDLE] = IdleWorker("cronlock", env=served, http_port=port)
    return measure_idle(admin_url, idle, IDLE_WINDOW_S, folder)


def bench_console(admin_url: str, folder: Path) -> dict[str, Any]:
    """The console's routes on 200 jobs and a million runs, then what its trigger costs a run."""
    with scratch_database(admin_url, "bench_console", _migrate) as libpq_url:
        result = console.measure(libpq_url, folder)
    with (
        scratch_database(admin_url, "bench_trigger_on", _migrate) as on_url,
        scratch_database(admin_url, "bench_trigger_off", _migrate) as off_url,
    ):
        with psycopg.connect(off_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE job_execution DISABLE TRIGGER USER")
        on = Database(normalize_database_url(on_url), application_name="bench-trigger-on")
        off = Database(normalize_database_url(off_url), application_name="bench-trigger-off")
        try:
            cpu = cpu_ticks()
            result["trigger"] = overhead.compare_triggers(on, off, overhead.BASE)
            busy, stolen = cpu.shares(cpu_ticks())
            result["trigger"] |= {"machine_busy": busy, "machine_stolen": stolen}
        finally:
            on.dispose()
            off.dispose()
    return result


def bench_ticks(admin_url: str) -> dict[str, Any]:
    """A tick of 1,000 no-op jobs: one worker, then 2 and 4 worker processes, in rounds.

    The shapes take turns, TICK_ROUNDS times, so a slow spell of the machine hits
    all of them; each is summarized by its median round, with min and max.
    """
    shapes = (1, *TICK_PROCESSES)
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in shapes}
    with scratch_database(admin_url, "bench_cronlock_tick", _migrate) as libpq_url:
        url = normalize_database_url(libpq_url)
        for _ in range(TICK_ROUNDS):
            for n in shapes:
                if n == 1:
                    rounds[n].append(ticks.bench_one_worker(url, libpq_url))
                else:
                    rounds[n].append(ticks.bench_processes(url, libpq_url, n))
    return {str(n): ticks.summarize_rounds(results) for n, results in rounds.items()}


def bench_peers(admin_url: str, folder: Path) -> list[dict[str, Any]]:
    """Every tool through the same scenarios on the same server, one after another."""
    results = []
    for workers_n, jobs in PEER_SHAPES:
        for tool in TOOLS:
            scenario = Scenario(tool, workers_n, jobs, periods=PEER_PERIODS)
            print(f"  {scenario.label} ...", flush=True)
            results.append(run_scenario(admin_url, scenario, folder))
    return results


def _out_of_time(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"the benchmark ran past its {TIME_LIMIT_S} s limit")


def _steps(admin_url: str, folder: Path) -> dict[str, Callable[[], Any]]:
    """Every measure, in the order a run takes them."""
    return {
        "start_delay": lambda: bench_start_delay(admin_url, folder),
        "idle": lambda: bench_idle(admin_url, folder),
        "startup": lambda: bench_startup(admin_url, folder),
        "core": lambda: bench_core(admin_url, folder),
        "console": lambda: bench_console(admin_url, folder),
        "ticks": lambda: bench_ticks(admin_url),
        "peers": lambda: bench_peers(admin_url, folder),
        "http_job": lambda: http_job.bench(admin_url),
    }


STEPS = ("start_delay", "idle", "startup", "core", "console", "ticks", "peers", "http_job")


def _without_samples(value: Any) -> Any:
    """The figures without their lists of timed samples, for printing."""
    if isinstance(value, dict):
        return {k: _without_samples(v) for k, v in value.items() if not k.startswith("samples")}
    if isinstance(value, list):
        return [_without_samples(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    """Run every measure, write docs/benchmarks.{md,json,png}, print the Markdown.

    `--only STEP,...` runs those measures alone and prints their figures as JSON,
    writing nothing: for working on one measure.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument(
        "--only",
        type=lambda raw: [step.strip() for step in raw.split(",")],
        metavar="STEP,...",
        help=f"run these measures alone, write nothing: {', '.join(STEPS)}",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(STEPS))
    if unknown:
        parser.error(f"no measure is called {', '.join(unknown)}; use {', '.join(STEPS)}")
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(TIME_LIMIT_S)
    started, cpu = time.monotonic(), cpu_ticks()
    try:
        with (
            postgres_server() as (admin_url, server),
            tempfile.TemporaryDirectory(prefix="cronlock-bench-") as scratch,
        ):
            folder = Path(scratch)
            results: dict[str, Any] = {"environment": environment(admin_url, server)}
            steps = _steps(admin_url, folder)
            for key in args.only or STEPS:
                print(f"{key} ...", flush=True)
                results[key] = steps[key]()
    finally:
        signal.alarm(0)
    results["elapsed_s"] = time.monotonic() - started
    results["machine_busy"], results["machine_stolen"] = cpu.shares(cpu_ticks())
    if args.only:
        print(json.dumps(_without_samples(results), indent=1))
        return
    results["settings"] = {
        "peer_periods": PEER_PERIODS,
        "delay_periods": DELAY_PERIODS,
        "idle_window_s": IDLE_WINDOW_S,
        "history_rows": HISTORY_ROWS,
        "timed_runs": overhead.TIMED_RUNS,
        "warmup_runs": overhead.WARMUP_RUNS,
        "chunks": overhead.CHUNKS,
        "console_runs": console.RUNS,
        "console_requests": console.TIMED_REQUESTS,
        "console_warmup_requests": console.WARMUP_REQUESTS,
    }
    (DOCS / "benchmarks.json").write_text(json.dumps(results, indent=1) + "\n")
    report.chart(results, DOCS / "benchmarks.png")
    markdown = report.markdown(results) + "\n" + http_job.markdown(results["http_job"])
    (DOCS / "benchmarks.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
