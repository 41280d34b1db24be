"""What every adapter shares: its command line and the line a job body writes.

See ``benchmarks/README.md`` (An adapter) for the contract as a whole.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime

PERIODS = ("second", "minute", "year")


def parse_args(prog: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``setup --dsn DSN`` or ``worker --dsn DSN --jobs J --every PERIOD --out PATH``."""
    parser = argparse.ArgumentParser(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="install the tool's schema in an empty database")
    setup.add_argument("--dsn", required=True)
    worker = commands.add_parser("worker", help="run one worker process until SIGTERM")
    worker.add_argument("--dsn", required=True)
    worker.add_argument("--jobs", type=int, required=True)
    worker.add_argument("--every", choices=PERIODS, required=True)
    worker.add_argument("--out", required=True)
    return parser.parse_args(argv)


def job_names(count: int) -> list[str]:
    """job-000, job-001, ..."""
    return [f"job-{i:03d}" for i in range(count)]


def open_output(path: str) -> int:
    """A descriptor whose small writes append atomically, shared by every process."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def run_line(job: str, instant: float, started: float, source: str) -> bytes:
    """One run: job, instant, body start (epoch seconds), pid, where the instant came from."""
    return f"{job}\t{instant:.3f}\t{started:.6f}\t{os.getpid()}\t{source}\n".encode()


def floor_instant(now: float, every: str) -> float:
    """The start of the period holding `now`: for tools that do not tell a job its instant."""
    if every == "second":
        return float(math.floor(now))
    if every == "minute":
        return now - now % 60
    year = datetime.fromtimestamp(now, tz=UTC).year
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()
