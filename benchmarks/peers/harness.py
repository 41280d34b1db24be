"""Run one tool through the peer scenario and read what happened from its output.

A scenario is W worker processes of one tool, J jobs, one period (second or
minute), P periods. The tool gets a fresh database, its adapter's ``setup``, then
W ``worker`` processes; once all print ``ready``, the window opens at the next
period boundary (plus a margin) and lasts P periods. Every job body appends a line
(job, instant, start time, pid) to one file; after the window and a grace for late
runs the processes get SIGTERM. Duplicates and misses are counted per (job,
instant) of the window; transactions come from ``pg_stat_database`` over the
processes' whole lives, CPU and peak RSS from ``/proc``.
"""

from __future__ import annotations

import http.client
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.server import scratch_database, transactions

TOOLS = ("cronlock", "procrastinate", "pgqueuer", "apscheduler")
PERIOD_S = {"second": 1, "minute": 60}
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
UNSUPPORTED = 3  # an adapter's exit code when the tool cannot do the period
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"


@dataclass(frozen=True)
class Scenario:
    """W worker processes x J jobs of one tool, every `every`, over `periods` periods."""

    tool: str
    workers: int
    jobs: int
    every: str = "second"
    periods: int = 15

    @property
    def label(self) -> str:
        return f"{self.tool} {self.workers}x{self.jobs} per {self.every}"


def _adapter(tool: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"benchmarks.peers.peer_{tool}", *args]


def setup_tool(tool: str, url: str) -> None:
    """Install the tool's schema with its adapter's `setup`."""
    done = subprocess.run(
        _adapter(tool, "setup", "--dsn", url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} setup failed: {done.stderr.strip()[-500:]}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def memory_kib(pid: int, field: str) -> int:
    """A /proc/PID/status memory figure (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


@contextmanager
def workers(
    tool: str,
    url: str,
    count: int,
    *,
    jobs: int,
    every: str,
    out: Path,
    log: Path,
    env: dict[str, str] | None = None,
) -> Iterator[list[subprocess.Popen[str]]]:
    """Start `count` worker processes, wait until each prints `ready`, stop them afterwards.

    `env` adds variables to the processes' environment.
    """
    started = [
        subprocess.Popen(
            _adapter(
                tool,
                "worker",
                "--dsn",
                url,
                "--jobs",
                str(jobs),
                "--every",
                every,
                "--out",
                str(out),
            ),
            stdout=subprocess.PIPE,
            stderr=log.open("a"),
            text=True,
            env=None if env is None else os.environ | env,
        )
        for _ in range(count)
    ]
    try:
        _wait_ready(started)
        yield started
    finally:
        stop(started)


def _wait_ready(processes: list[subprocess.Popen[str]]) -> None:
    waiting = selectors.DefaultSelector()
    for process in processes:
        if process.stdout is None:
            raise RuntimeError("worker started without a stdout pipe")
        waiting.register(process.stdout, selectors.EVENT_READ, process)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while waiting.get_map():
        events = waiting.select(timeout=max(0.0, deadline - time.monotonic()))
        if not events:
            raise TimeoutError(f"workers not ready after {READY_TIMEOUT_S:.0f} s")
        for key, _ in events:
            process: subprocess.Popen[str] = key.data
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if line.strip() == "ready":
                waiting.unregister(key.fileobj)
            elif not line:
                code = process.wait()
                raise ChildProcessError(code)


def stop(processes: list[subprocess.Popen[str]]) -> list[int | None]:
    """SIGTERM each, wait, SIGKILL what is left; return exit codes."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return [process.returncode for process in processes]


def wait_backends_gone(admin_url: str, name: str, timeout_s: float = 30) -> None:
    """Backends flush their statistics on exit: wait until the tool's have all exited."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(admin_url, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute(BACKENDS, (name,)).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.1)


def read_lines(out: Path) -> list[tuple[str, float, float, int, str]]:
    """The lines job bodies appended: (job, instant, started, pid, source)."""
    if not out.exists():
        return []
    lines = []
    for raw in out.read_text().splitlines():
        job, instant, started, pid, source = raw.split("\t")
        lines.append((job, float(instant), float(started), int(pid), source))
    return lines


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def score(
    lines: list[tuple[str, float, float, int, str]], scenario: Scenario, first: float
) -> dict[str, Any]:
    """Duplicates, misses and start delays over the window's (job, instant) pairs."""
    period = PERIOD_S[scenario.every]
    instants = [first + i * period for i in range(scenario.periods)]
    window = {round(t, 3) for t in instants}
    in_window = [line for line in lines if round(line[1], 3) in window]
    counts = Counter((job, round(instant, 3)) for job, instant, *_ in in_window)
    expected = scenario.jobs * len(instants)
    delays_ms = [(started - instant) * 1000 for _, instant, started, _, _ in in_window]
    return {
        "expected": expected,
        "runs": len(in_window),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "misses": expected - len(counts),
        "delay_p50_ms": percentile(delays_ms, 0.50),
        "delay_p99_ms": percentile(delays_ms, 0.99),
        "delay_max_ms": max(delays_ms, default=None),
        "instant_source": sorted({source for *_, source in in_window}),
        "pids_running": len({pid for _, _, _, pid, _ in in_window}),
    }


def run_scenario(admin_url: str, scenario: Scenario, folder: Path) -> dict[str, Any]:
    """Set up the tool in a fresh database, run the scenario, and score it."""
    name = f"bench_{scenario.tool}_{scenario.workers}x{scenario.jobs}_{scenario.every}"
    out, log = folder / f"{name}.out", folder / f"{name}.log"
    result: dict[str, Any] = {"scenario": scenario.__dict__ | {"label": scenario.label}}
    period = PERIOD_S[scenario.every]
    with scratch_database(admin_url, name, lambda url: setup_tool(scenario.tool, url)) as url:
        before = transactions(admin_url, name)
        try:
            with workers(
                scenario.tool,
                url,
                scenario.workers,
                jobs=scenario.jobs,
                every=scenario.every,
                out=out,
                log=log,
            ) as processes:
                first = (math.floor(time.time() / period) + 1) * period
                if first - time.time() < 1.0:
                    first += period
                _sleep_until(first)
                cpu_start = sum(cpu_seconds(p.pid) for p in processes)
                end = first + scenario.periods * period
                _sleep_until(end + max(2.0, period / 6))
                cpu_used = sum(cpu_seconds(p.pid) for p in processes) - cpu_start
                peak_rss_kib = max(memory_kib(p.pid, "VmHWM") for p in processes)
                alive = sum(p.poll() is None for p in processes)
        except ChildProcessError as exc:
            if exc.args[0] == UNSUPPORTED:
                return result | {"unsupported": _last_line(log)}
            raise RuntimeError(f"{scenario.label}: a worker exited: {_last_line(log)}") from exc
        wait_backends_gone(admin_url, name)
        used = transactions(admin_url, name) - before
    lines = read_lines(out)
    scored = score(lines, scenario, first)
    runs = max(scored["runs"], 1)
    return (
        result
        | scored
        | {
            "all_lines": len(lines),
            "transactions": used,
            "transactions_per_run": used / max(len(lines), 1),
            "cpu_s": cpu_used,
            "cpu_ms_per_run": cpu_used * 1000 / runs,
            "peak_rss_mib": peak_rss_kib / 1024,
            "alive_at_end": alive,
        }
    )


@dataclass(frozen=True)
class IdleWorker:
    """One idle worker: its tool's adapter, what it adds to the worker's environment, and
    an HTTP port the worker serves (asked GET /healthz once, before the window)."""

    tool: str
    env: dict[str, str] | None = None
    http_port: int | None = None


def measure_idle(admin_url: str, idle: dict[str, IdleWorker], window_s: float, folder: Path) -> Any:
    """Transactions per idle minute and RSS: one worker per entry, jobs due once a year.

    All workers idle at once, each in its own database, so the window is paid once.
    Counters are read while the workers run: a backend may hold up to 10 s of its
    counts back, at the start of the window as at its end, so for steady polling
    the two edges cancel out; the settle wait lets start-up traffic land first.
    """
    settle_s = 11.0
    results: dict[str, Any] = {}
    healthz: dict[str, int] = {}
    with ExitStack() as stack:
        running = {}
        for label, entry in idle.items():
            name = f"bench_idle_{label}"
            url = stack.enter_context(
                scratch_database(admin_url, name, lambda url, t=entry.tool: setup_tool(t, url))
            )
            group = workers(
                entry.tool,
                url,
                1,
                jobs=20,
                every="year",
                out=folder / "idle.out",
                log=folder / f"idle_{label}.log",
                env=entry.env,
            )
            running[label] = (name, stack.enter_context(group)[0])
            if entry.http_port is not None:
                healthz[label] = _healthz(entry.http_port)
        time.sleep(settle_s)
        opened = _database_now(admin_url)
        before = {label: transactions(admin_url, name) for label, (name, _) in running.items()}
        time.sleep(window_s)
        for label, (name, process) in running.items():
            used = transactions(admin_url, name) - before[label]
            results[label] = {
                "window_s": window_s,
                "transactions": used,
                "transactions_per_minute": used * 60 / window_s,
                "statements_seen": _busy_connections(admin_url, name, opened),
                "rss_mib": memory_kib(process.pid, "VmRSS") / 1024,
            }
            if label in healthz:
                results[label]["healthz"] = healthz[label]
    return results


def _healthz(port: int) -> int:
    """The status of GET /healthz on a loopback port: proof that the worker serves it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def _database_now(admin_url: str) -> Any:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        row = admin.execute("SELECT now()").fetchone()
    return row[0] if row else None


def _busy_connections(admin_url: str, name: str, since: Any) -> int:
    """The tool's connections that ran a statement since `since`: zero means truly quiet.

    `pg_stat_database` also counts autovacuum's visits to the database; a client
    backend's `state_change` moves only when the tool itself sends something.
    """
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        " AND backend_type = 'client backend' AND state_change > %s"
    )
    with psycopg.connect(admin_url, autocommit=True) as admin:
        row = admin.execute(query, (name, since)).fetchone()
    return int(row[0]) if row else -1


def _sleep_until(epoch_s: float) -> None:
    remaining = epoch_s - time.time()
    if remaining > 0:
        time.sleep(remaining)


def _last_line(log: Path) -> str:
    lines = log.read_text().strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "(no output)"
