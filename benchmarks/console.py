"""The console on a long history: the job list, the overview page and a day's timeline.

A fresh database gets the 200 jobs of ``benchmarks/console_jobs.py`` and a million
runs over the last 30 days, laid out on each job's own instants by one
``INSERT ... SELECT`` over ``generate_series``: mostly SUCCESS, with durations
spread around each job's typical one, some FAILURE (half of them retried as
attempt 2), SKIPPED and MISSED, and a few runs by hand with parameters. Then
``cronlock serve`` serves it on a loopback port, and the routes are timed over one
kept-alive HTTP connection, taking turns, after warm-up requests.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from app.config import ENV_VARIABLES
from benchmarks import console_jobs, day_counts
from benchmarks.console_jobs import SPECS, TIMELINE_JOB
from benchmarks.server import cpu_ticks

RUNS = int(os.environ.get("BENCH_CONSOLE_RUNS", "1000000"))
# "trigger": the day counts come from the trigger, row by row, in the seed's one
# transaction (minutes for a million runs); "backfill": the seed runs without the
# user triggers and revision 0006's backfill statement counts the rows afterwards
# (see benchmarks/day_counts.py).
SEED = os.environ.get("BENCH_CONSOLE_SEED", "backfill")
HISTORY_DAYS = 30
MANUAL_RUNS_PER_JOB = 40
WARMUP_REQUESTS = 5
TIMED_REQUESTS = 50
SERVE_TIMEOUT_S = 60.0
HOST = "127.0.0.1"

# Registered a day before the history starts, so every instant of it is shown.
SEED_JOBS = (
    "INSERT INTO job (name, created_at)"
    " SELECT name, now() - (%(days)s + 1) * interval '1 day' FROM unnest(%(names)s::text[]) name"
)
# Each job's instants over the last `days` days (`period_s` apart from `offset_s` past
# the epoch: what its cron expression or interval gives, in UTC), then the runs of
# the newest ones, attempt 2 after half of the failures, and runs by hand of the jobs
# with parameters; inserted oldest first, as a worker would have. Times are capped at
# now(): the few runs that would still be going are shown finished.
SEED_RUNS = """
WITH spec AS (
    SELECT * FROM unnest(%(names)s::text[], %(periods)s::integer[], %(offsets)s::integer[],
                         %(base_ms)s::float8[], %(with_params)s::boolean[])
        AS s(job_name, period_s, offset_s, base_ms, with_params)
),
instant AS (
    SELECT s.job_name, s.base_ms, s.period_s, i AS scheduled_for, random() AS fate
    FROM spec s CROSS JOIN LATERAL generate_series(
        to_timestamp(ceil((extract(epoch FROM now() - %(days)s * interval '1 day') - s.offset_s)
                          / s.period_s) * s.period_s + s.offset_s),
        now(), s.period_s * interval '1 second') AS i
),
scheduled AS (
    SELECT i.job_name, i.base_ms, i.scheduled_for, 'schedule' AS trigger, a.attempt,
           CASE WHEN a.attempt = 2 THEN
                    CASE WHEN random() < 0.8 THEN 'SUCCESS' ELSE 'FAILURE' END
                WHEN i.fate < 0.005 THEN 'MISSED'
                WHEN i.fate < 0.015 THEN 'SKIPPED'
                WHEN i.fate < 0.035 THEN 'FAILURE'
                ELSE 'SUCCESS' END AS status,
           CASE WHEN i.fate < 0.005 THEN i.period_s  -- recorded when the next instant came
                ELSE (a.attempt - 1) * 10 + 0.002 + 0.03 * random() END AS delay_s,
           NULL::jsonb AS params, false AS dry_run, NULL AS requested_by
    FROM instant i CROSS JOIN LATERAL (
        SELECT 1 AS attempt UNION ALL SELECT 2 WHERE i.fate >= 0.015 AND i.fate < 0.025
    ) a
    ORDER BY i.scheduled_for DESC, a.attempt DESC
    LIMIT %(scheduled_rows)s
),
manual AS (
    SELECT s.job_name, s.base_ms,
           now() - %(days)s * interval '1 day' * random() AS scheduled_for, 'manual' AS trigger,
           1 AS attempt, CASE WHEN random() < 0.9 THEN 'SUCCESS' ELSE 'FAILURE' END AS status,
           0.001 AS delay_s,
           jsonb_build_object('days', 1 + floor(random() * 7)::integer, 'table', 'events'),
           random() < 0.25, 'console:ops'
    FROM spec s CROSS JOIN generate_series(1, %(manual_per_job)s)
    WHERE s.with_params
),
planned AS (
    SELECT p.*, least(p.scheduled_for + p.delay_s * interval '1 second', now()) AS started_at,
           CASE WHEN p.status IN ('SUCCESS', 'FAILURE')
                THEN p.base_ms * exp(0.8 * (random() + random() + random() - 1.5))
                ELSE 0 END AS took_ms
    FROM (SELECT * FROM scheduled UNION ALL SELECT * FROM manual) p
)
INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt, started_at,
                           heartbeat_at, completed_at, worker_id, error_message, result,
                           params, dry_run, requested_by)
SELECT job_name, status, scheduled_for, trigger, attempt, started_at,
       least(started_at + took_ms * interval '1 millisecond', now()),
       least(started_at + took_ms * interval '1 millisecond', now()),
       CASE WHEN status = 'MISSED' THEN '-' ELSE 'replica-' || floor(random() * 3) END,
       CASE status WHEN 'FAILURE' THEN 'TimeoutError: the upstream API did not answer in 30 s'
                   WHEN 'SKIPPED' THEN 'pre-check: nothing new since the last run'
                   WHEN 'MISSED' THEN 'missed: no worker ran it' END,
       CASE WHEN status = 'SUCCESS'
            THEN jsonb_build_object('rows', floor(random() * 500)::integer) END,
       params, dry_run, requested_by
FROM planned
ORDER BY scheduled_for, attempt
"""
STATUSES = "SELECT status, trigger, count(*) FROM job_execution GROUP BY 1, 2"


def seed(libpq_url: str, rows: int, *, triggers: bool) -> dict[str, Any]:
    """Register the jobs and insert `rows` runs; the day counts by the trigger, row by row,
    or (triggers False) by revision 0006's backfill after an insert without them."""
    names = [spec.name for spec in SPECS]
    manual = MANUAL_RUNS_PER_JOB * sum(spec.with_params for spec in SPECS)
    params = {
        "names": names,
        "periods": [spec.period_s for spec in SPECS],
        "offsets": [spec.offset_s for spec in SPECS],
        "base_ms": [spec.base_ms for spec in SPECS],
        "with_params": [spec.with_params for spec in SPECS],
        "days": HISTORY_DAYS,
        "manual_per_job": MANUAL_RUNS_PER_JOB,
        "scheduled_rows": rows - manual,
    }
    timings: dict[str, Any] = {"triggers": triggers}
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(SEED_JOBS, params)
        started = time.perf_counter()
        with conn.transaction() if triggers else day_counts.triggers_off(conn):
            inserted = conn.execute(SEED_RUNS, params).rowcount
        timings["insert_s"] = time.perf_counter() - started
        if not triggers:
            timings["backfill_s"] = day_counts.recount(conn)
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = time.perf_counter() - started
        by_status: Counter[str] = Counter()
        manual_runs = 0
        for status, trigger, count in conn.execute(STATUSES):
            by_status[status] += count
            manual_runs += count if trigger == "manual" else 0
        retried = conn.execute("SELECT count(*) FROM job_execution WHERE attempt = 2").fetchone()
        day_rows = conn.execute("SELECT count(*), sum(runs) FROM job_day_counts").fetchone()
        size = conn.execute("SELECT pg_total_relation_size('job_execution')").fetchone()
    return timings | {
        "jobs": len(names),
        "runs": inserted,
        "by_status": dict(sorted(by_status.items())),
        "manual_runs": manual_runs,
        "second_attempts": retried[0] if retried else 0,
        "day_count_rows": day_rows[0] if day_rows else 0,
        "day_counted_runs": day_rows[1] if day_rows else 0,
        "table_mib": (size[0] if size else 0) / 2**20,
        "history_days": HISTORY_DAYS,
    }


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without cronlock's own variables (a shell's must not leak in)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARIABLES}
    return env | extra


@contextmanager
def serve(libpq_url: str, folder: Path) -> Iterator[int]:
    """`cronlock serve` on a free loopback port with the benchmark's jobs; yield the port."""
    port = free_port()
    env = clean_environment(
        DATABASE_URL=libpq_url,
        JOBS_MODULE=console_jobs.__file__,
        METRICS_PORT=str(port),
        METRICS_HOST=HOST,
        LOG_LEVEL="WARNING",
    )
    log = folder / "console-serve.log"
    with log.open("a") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            env=env,
            cwd=folder,  # no .env of a checkout is read
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_served(port, process, log)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_served(port: int, process: subprocess.Popen[Any], log: Path) -> None:
    """Wait until GET /healthz answers 200 (it reads nothing from the database)."""
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the console exited: {log.read_text().strip()[-500:]}")
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            if get(conn, "/healthz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        finally:
            conn.close()
        time.sleep(0.1)
    raise TimeoutError(f"the console did not answer on port {port} in {SERVE_TIMEOUT_S:.0f} s")


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """One GET on a kept-alive connection: status and the whole body."""
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def timeline_path() -> str:
    """The timeline of the per-minute job over the day up to now."""
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=1)).isoformat(), now.isoformat()
    return f"/api/jobs/{TIMELINE_JOB}/instants?from={quote(start)}&to={quote(end)}"


ROUTES: dict[str, Callable[[], str]] = {
    "api_jobs": lambda: "/api/jobs",
    "overview": lambda: "/",
    "timeline": timeline_path,
}


def summarize_ms(samples_s: list[float]) -> dict[str, Any]:
    """Median, p95, min and max in milliseconds, and the samples."""
    ms = sorted(sample * 1000 for sample in samples_s)
    return {
        "median_ms": statistics.median(ms),
        "p95_ms": statistics.quantiles(ms, n=20)[18],
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "samples_ms": [round(x, 2) for x in ms],
    }


def time_routes(port: int) -> dict[str, Any]:
    """Warm each route up, then time them taking turns; check what each answered."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    bodies: dict[str, bytes] = {}
    warmup: dict[str, list[float]] = {label: [] for label in ROUTES}
    samples: dict[str, list[float]] = {label: [] for label in ROUTES}
    try:
        for rounds, taken in ((WARMUP_REQUESTS, warmup), (TIMED_REQUESTS, samples)):
            for _ in range(rounds):
                for label, path in ROUTES.items():
                    target = path()
                    started = time.perf_counter()
                    status, bodies[label] = get(conn, target)
                    taken[label].append(time.perf_counter() - started)
                    if status != 200:
                        raise RuntimeError(f"GET {target}: {status} {bodies[label][:300]!r}")
    finally:
        conn.close()
    result = {
        label: summarize_ms(taken) | {"warmup_ms": [s * 1000 for s in warmup[label]]}
        for label, taken in samples.items()
    }
    jobs = json.loads(bodies["api_jobs"])["jobs"]
    timeline = json.loads(bodies["timeline"])["instants"]
    for label, body in bodies.items():
        result[label]["bytes"] = len(body)
    result["api_jobs"]["jobs"] = len(jobs)
    result["timeline"]["job"] = TIMELINE_JOB
    result["timeline"]["instants"] = len(timeline)
    result["timeline"]["states"] = dict(Counter(i["state"] for i in timeline))
    return result


def measure(libpq_url: str, folder: Path) -> dict[str, Any]:
    """Seed the database, serve it, time the routes."""
    if SEED not in ("trigger", "backfill"):
        raise SystemExit(f"BENCH_CONSOLE_SEED={SEED!r}: use trigger or backfill")
    dataset = seed(libpq_url, RUNS, triggers=SEED == "trigger")
    with serve(libpq_url, folder) as port:
        cpu = cpu_ticks()
        routes = time_routes(port)
        busy, stolen = cpu.shares(cpu_ticks())
    return {"dataset": dataset, "routes": routes, "machine_busy": busy, "machine_stolen": stolen}
