"""Many jobs, many workers: 10,000 per-minute jobs shared by 8 `cronlock worker` processes.

Real worker processes on a scratch database of the bench's server run for a few
whole minutes; then the table and the server's statistics say what each run cost:
transactions, the server's CPU, WAL, table and index growth, connections held,
how late runs started and how long each minute took to settle, and whether every
instant has exactly one outcome. `python -m benchmarks.scale` runs it alone and
prints the figures as JSON; docs/sizing.md turns them into arithmetic for larger
deployments.

BENCH_SCALE_JOBS, BENCH_SCALE_WORKERS and BENCH_SCALE_MINUTES change its size.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.server import cpu_ticks, postgres_server, scratch_database, transactions

REPO = Path(__file__).resolve().parent.parent
JOBS = int(os.environ.get("BENCH_SCALE_JOBS", "10000"))
WORKERS = int(os.environ.get("BENCH_SCALE_WORKERS", "8"))
MINUTES = int(os.environ.get("BENCH_SCALE_MINUTES", "3"))
DATABASE = "cronlock_bench_scale"

JOBS_MODULE = """
from app.job import job


def _noop(ctx):
    return None


JOBS = [job(f"scale-{{i:05d}}", schedule="* * * * *")(_noop) for i in range({jobs})]
"""


def _server_cpu_s(postmaster_pid: int) -> float:
    """CPU seconds of the server: the postmaster, its live children, and the children it
    has reaped (counted in its cutime/cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster_pid:
            total += sum(int(x) for x in fields[11:15]) / ticks  # utime stime cutime cstime
        elif ppid == postmaster_pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _postmaster_pid(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None  # noqa: S101
    return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])


def _snapshot(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,"
            " pg_total_relation_size('job_execution'), pg_relation_size('job_execution'),"
            " pg_indexes_size('job_execution'), pg_total_relation_size('job_day_counts'),"
            " (SELECT count(*) FROM job_execution)"
        ).fetchone()
    assert row is not None  # noqa: S101
    wal, total, heap, indexes, counts, runs = row
    return {
        "wal_bytes": int(wal),
        "table_bytes": int(total),
        "heap_bytes": int(heap),
        "index_bytes": int(indexes),
        "day_counts_bytes": int(counts),
        "runs": int(runs),
    }


def _connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'cronlock'"
        ).fetchone()
    return int(row[0]) if row else 0


def _minutes(url: str, first: datetime, last: datetime) -> dict[str, Any]:
    """What became of each instant in [first, last]: outcomes, lateness, settle time."""
    with psycopg.connect(url, autocommit=True) as conn:
        per_instant = conn.execute(
            "SELECT scheduled_for, count(*) FILTER (WHERE status = 'SUCCESS'),"
            " count(*) FILTER (WHERE status <> 'SUCCESS'),"
            " count(DISTINCT job_name),"
            " extract(epoch FROM max(completed_at) - scheduled_for)"
            " FROM job_execution WHERE scheduled_for BETWEEN %s AND %s GROUP BY 1 ORDER BY 1",
            (first, last),
        ).fetchall()
        lateness = [
            float(r[0])
            for r in conn.execute(
                "SELECT extract(epoch FROM started_at - scheduled_for) * 1000"
                " FROM job_execution WHERE scheduled_for BETWEEN %s AND %s"
                " AND status = 'SUCCESS'",
                (first, last),
            )
        ]
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM job_execution WHERE status = 'SUCCESS'"
            " GROUP BY job_name, scheduled_for HAVING count(*) > 1) d"
        ).fetchone()
        vacuum = conn.execute(
            "SELECT n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count"
            " FROM pg_stat_user_tables WHERE relname = 'job_execution'"
        ).fetchone()
    lateness.sort()
    return {
        "instants": [
            {
                "scheduled_for": r[0].isoformat(),
                "success": r[1],
                "other": r[2],
                "jobs": r[3],
                "settled_s": float(r[4] or 0),
            }
            for r in per_instant
        ],
        "start_late_ms": {
            "p50": statistics.median(lateness) if lateness else None,
            "p99": lateness[int(0.99 * (len(lateness) - 1))] if lateness else None,
            "max": lateness[-1] if lateness else None,
        },
        "duplicate_success": int(duplicates[0]) if duplicates else None,
        "job_execution": dict(
            zip(("live", "dead", "autovacuums", "autoanalyzes"), vacuum or (), strict=False)
        ),
    }


def bench(admin_url: str) -> dict[str, Any]:
    """Run the workers for MINUTES whole minutes and measure."""
    with (
        scratch_database(admin_url, DATABASE) as url,
        tempfile.TemporaryDirectory(prefix="cronlock-scale-") as scratch,
    ):
        folder = Path(scratch)
        (folder / "scale_jobs.py").write_text(JOBS_MODULE.format(jobs=JOBS))
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": url,
            "JOBS_MODULE": str(folder / "scale_jobs.py"),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        env.pop("METRICS_PORT", None)
        subprocess.run(
            [sys.executable, "-m", "app", "migrate"], env=env, check=True, capture_output=True
        )
        postmaster = _postmaster_pid(url)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "app", "worker"],
                env=env,
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=(folder / f"worker-{i}.log").open("w"),
            )
            for i in range(WORKERS)
        ]
        try:
            # Start measuring at the first whole minute after every worker has started.
            now = datetime.now(UTC)
            first = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
            if (first - now).total_seconds() < 20:
                first += timedelta(minutes=1)
            time.sleep(max((first - datetime.now(UTC)).total_seconds() - 1, 0))
            before = _snapshot(url)
            xacts_before = transactions(admin_url, DATABASE)
            cpu_before, machine_before = _server_cpu_s(postmaster), cpu_ticks()
            connections: list[int] = []
            end = first + timedelta(minutes=MINUTES)
            while datetime.now(UTC) < end - timedelta(seconds=1):
                connections.append(_connections(url))
                time.sleep(2)
            after = _snapshot(url)
            cpu_after, machine_after = _server_cpu_s(postmaster), cpu_ticks()
            xacts_after = transactions(admin_url, DATABASE)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
        last = first + timedelta(minutes=MINUTES - 1)
        outcome = _minutes(url, first, last)
        runs = after["runs"] - before["runs"]
        busy, stolen = machine_before.shares(machine_after)
        per_million = 1_000_000 / runs if runs else 0.0
        return {
            "jobs": JOBS,
            "workers": WORKERS,
            "minutes": MINUTES,
            "runs_in_window": runs,
            "transactions_per_run": (xacts_after - xacts_before) / runs if runs else None,
            "server_cpu_ms_per_1000_runs": (cpu_after - cpu_before) * 1e6 / runs if runs else None,
            "wal_bytes_per_run": (after["wal_bytes"] - before["wal_bytes"]) / runs
            if runs
            else None,
            "growth_per_million_runs_mib": {
                key: (after[key] - before[key]) * per_million / 2**20
                for key in ("table_bytes", "heap_bytes", "index_bytes", "day_counts_bytes")
            },
            "connections": {
                "max": max(connections, default=0),
                "median": statistics.median(connections) if connections else 0,
                "per_worker_max": max(connections, default=0) / WORKERS,
            },
            "machine_busy": busy,
            "machine_stolen": stolen,
            **outcome,
        }


def main() -> None:
    """Run the scale benchmark alone on the bench's server; print its figures and keep
    them in docs/scale.json (which docs/benchmarks.md's Scale section is made from)."""
    with postgres_server() as (admin_url, server):
        figures = bench(admin_url)
        figures["environment"] = {"cores": os.cpu_count(), "server": server}
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    (REPO / "docs" / "scale.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
