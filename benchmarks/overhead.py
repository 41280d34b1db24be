"""Per-run overhead: cronlock's claim and finish against the same SQL sent by hand.

The floor is the same statements on one raw psycopg 3 connection, in the same run
on the same server; the two paths alternate in chunks so machine noise hits both.
Round trips come from libpq's protocol trace. History scale repeats the timing
after filling ``job_execution`` with a million finished runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import event

from app.core.claims import Claim, ClaimRequest
from app.core.outcomes import Outcome, RunStatus
from app.store.claiming import claim_run, ensure_jobs
from app.store.database import Database
from app.store.runs import finish_run
from benchmarks import day_counts

WARMUP_RUNS = 200
TIMED_RUNS = 4000
CHUNKS = 20  # cronlock and raw alternate in chunks, so drift on a busy machine hits both
COUNTED_RUNS = 100
WORKER_ID = "bench:1"
STALE_AFTER_S = 3600
BASE = datetime(2026, 1, 1, tzinfo=UTC)

# What claim_run and finish_run send for a no-op run (app/store/claiming.py, app/store/runs.py),
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

RunFn = Callable[[datetime], None]
SUCCESS = Outcome(RunStatus.SUCCESS)


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


def time_runs(runs: dict[str, RunFn], base: datetime = BASE) -> dict[str, list[int]]:
    """Warm each up (pool, prepared statements), then time runs, each for a new instant, in ns."""
    for run in runs.values():
        for i in range(WARMUP_RUNS):
            run(base + timedelta(seconds=i))
    samples: dict[str, list[int]] = {label: [] for label in runs}
    size = TIMED_RUNS // CHUNKS
    for first in range(WARMUP_RUNS, WARMUP_RUNS + TIMED_RUNS, size):
        for label, run in runs.items():
            for instant in [base + timedelta(seconds=i) for i in range(first, first + size)]:
                started = time.perf_counter_ns()
                run(instant)
                samples[label].append(time.perf_counter_ns() - started)
    return samples


def summarize(samples_ns: list[int]) -> dict[str, Any]:
    """Median, p99, min and max (what the targets are about), and the samples."""
    us = sorted(sample / 1000 for sample in samples_ns)
    return {
        "median_us": statistics.median(us),
        "p99_us": statistics.quantiles(us, n=100)[98],
        "min_us": us[0],
        "max_us": us[-1],
        "samples_us": [round(x) for x in us],
    }


def compare_in_chunks(runs: dict[str, RunFn], base: datetime) -> dict[str, Any]:
    """Time two kinds of run in alternating chunks: each one's summary, and the ratio of
    the first to the second and their difference.

    The ratio is the median over chunks of each chunk's ratio of medians: a slow
    spell of the machine then moves both sides of a ratio, not one. The difference
    (in µs) is taken the same way, from each chunk's difference of medians.
    """
    samples = time_runs(runs, base)
    first, second = list(runs)
    size = TIMED_RUNS // CHUNKS
    chunk_medians = [
        (
            statistics.median(samples[first][i : i + size]),
            statistics.median(samples[second][i : i + size]),
        )
        for i in range(0, TIMED_RUNS, size)
    ]
    chunk_ratios = [one / other for one, other in chunk_medians]
    chunk_differences = [(one - other) / 1000 for one, other in chunk_medians]
    result = {label: summarize(taken) for label, taken in samples.items()}
    return result | {
        "ratio_median": statistics.median(chunk_ratios),
        "ratio_chunks": chunk_ratios,
        "ratio_p99": result[first]["p99_us"] / result[second]["p99_us"],
        "difference_median_us": statistics.median(chunk_differences),
        "difference_chunks_us": chunk_differences,
    }


def compare(database: Database, raw: psycopg.Connection[Any], base: datetime) -> dict[str, Any]:
    """cronlock against the raw floor, in alternating chunks."""
    runs = {"cronlock": cronlock_run(database, "runs-cronlock"), "raw": raw_run(raw, "runs-raw")}
    return compare_in_chunks(runs, base)


def compare_history(empty: Database, full: Database, base: datetime) -> dict[str, Any]:
    """cronlock on a database with a long history against one without, in alternating chunks."""
    runs = {"full": cronlock_run(full, "runs-cronlock"), "empty": cronlock_run(empty, "empty")}
    return compare_in_chunks(runs, base)


def compare_triggers(on: Database, off: Database, base: datetime) -> dict[str, Any]:
    """cronlock on a database whose day-counts triggers fire against one where they are
    disabled, in alternating chunks: what the trigger adds to a run's finish."""
    runs = {"on": cronlock_run(on, "runs-cronlock"), "off": cronlock_run(off, "runs-cronlock")}
    return compare_in_chunks(runs, base)


def _wire_counts(log: str) -> dict[str, float]:
    """Per run: round trips (ReadyForQuery), statements, and the driver's BEGIN/COMMIT Queries.

    A statement is an Execute (extended protocol) or a Query that is not one of
    the driver's own transaction commands.
    """
    counts = dict.fromkeys(("round_trips", "statements", "begin", "commit", "rollback"), 0)
    for fields in (line.split("\t") for line in log.splitlines()):
        if fields[0] == "B" and fields[2:3] == ["ReadyForQuery"]:
            counts["round_trips"] += 1
        elif fields[0] == "F" and fields[2:3] == ["Execute"]:
            counts["statements"] += 1
        elif fields[0] == "F" and fields[2:3] == ["Query"]:
            word = fields[3].strip(' "').split(" ")[0].lower()
            counts[word if word in counts else "statements"] += 1
    return {key: n / COUNTED_RUNS for key, n in counts.items()}


def count_round_trips(database: Database, raw: psycopg.Connection[Any], folder: Path) -> Any:
    """Round trips and statements per run of both paths, from libpq's protocol trace."""
    runs = (cronlock_run(database, "count-cronlock"), raw_run(raw, "count-raw"))
    traced: dict[int, tuple[psycopg.Connection[Any], int, Path]] = {}

    def trace(conn: psycopg.Connection[Any], *_: Any) -> None:
        if id(conn) not in traced:  # a file per connection: shared files interleave lines
            path = folder / f"{len(traced)}.log"
            traced[id(conn)] = (conn, os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), path)
            conn.pgconn.trace(traced[id(conn)][1])
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    trace(raw)
    event.listen(database.engine, "checkout", trace)
    try:
        for i in range(COUNTED_RUNS):
            for run in runs:
                run(BASE + timedelta(seconds=i))
    finally:
        event.remove(database.engine, "checkout", trace)
        for conn, fd, _ in traced.values():
            conn.pgconn.untrace()  # flushes libpq's buffer
            os.close(fd)
    raw_log = traced.pop(id(raw))[2].read_text()
    ours = _wire_counts("".join(path.read_text() for _, _, path in traced.values()))
    return {"cronlock_wire": ours, "raw_wire": _wire_counts(raw_log)}


FILL_JOBS = (
    "INSERT INTO job (name) SELECT 'history-' || lpad(g::text, 3, '0')"
    " FROM generate_series(2, 99) AS g ON CONFLICT DO NOTHING"
)
# Finished runs spread over 100 jobs, the two timed ones among them, on instants
# before BASE, so the timed runs' instants never collide with them.
FILL_RUNS = (
    "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt,"
    " started_at, heartbeat_at, completed_at, worker_id)"
    " SELECT CASE g %% 100 WHEN 0 THEN %(first)s WHEN 1 THEN %(second)s"
    " ELSE 'history-' || lpad((g %% 100)::text, 3, '0') END,"
    " CASE WHEN g %% 10 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,"
    " timestamptz '2020-01-01' + g * interval '1 second', 'schedule', 1, now(), now(), now(),"
    " 'bench:fill' FROM generate_series(1, %(rows)s) AS g"
)


def fill_history(libpq_url: str, rows: int, job_names: tuple[str, str]) -> float:
    """Add `rows` finished runs (100 jobs, the timed two among them) and their day counts;
    return seconds taken.

    The runs go in without the day-counts trigger, then are counted at once (see
    `benchmarks.day_counts`): through the trigger, the one insert would take far longer.
    """
    started = time.perf_counter()
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(FILL_JOBS)
        conn.execute("INSERT INTO job (name) VALUES (%s), (%s) ON CONFLICT DO NOTHING", job_names)
        with day_counts.triggers_off(conn):
            conn.execute(FILL_RUNS, {"first": job_names[0], "second": job_names[1], "rows": rows})
        day_counts.recount(conn)
        conn.execute("VACUUM ANALYZE job_execution, job_day_counts")
    return time.perf_counter() - started
