"""Per-run overhead of an HTTP job: `http_job` against the same call as a bare httpx POST.

Three kinds of run go through cronlock's real path (claim, body under the alarm,
finish) on the same database, against the same loopback target served by another
process, and alternate in chunks so machine noise hits all of them. The floor is a
plain job whose body sends the same POST (same headers, body and token) with a new
`httpx.Client` per run, as a job body would. The middle one sends it with an
`httpx.AsyncClient` in `asyncio.run`, as the HTTP job does, which shows what
httpx's async path costs by itself. Both share one TLS context, as the HTTP job
does, so loading the CA bundle is counted against none. What the HTTP job adds
over the middle one is its own work: the stop watcher, the token cache, its
headers, the excerpt kept as the result, its log line and metrics.

``python -m benchmarks.http_job`` (or ``make bench-http``) runs this figure alone
and rewrites its section of docs/benchmarks.md and its key in benchmarks.json;
``make bench`` runs it with the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings, normalize_database_url
from app.core.job import Job
from app.http_jobs.definition import http_job
from app.ops.logs import configure_logging
from app.runtime.context import RunContext
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat
from app.runtime.runner import claim_and_run, claim_request
from app.store.database import Database
from app.store.facade import Store
from app.store.migrations import upgrade_to_head
from benchmarks.overhead import summarize
from benchmarks.server import environment, postgres_server, scratch_database

DOCS = Path(__file__).resolve().parent.parent / "docs"
WARMUP_RUNS = 50
TIMED_RUNS = 1000
CHUNKS = 10
BASE = datetime(2026, 1, 1, tzinfo=UTC)
PATH = "/v1/admin/commission-locks/release-expired"
BODY = {"older_than_minutes": 60}
SECTION = "## HTTP jobs"

# The loopback token endpoint and target, served by a child process so their CPU
# is not this process's.
SERVER = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def token(request):
    return JSONResponse({"access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600})

async def release(request):
    await request.body()
    return JSONResponse({"released": 3})

app = Starlette(routes=[
    Route("/oauth/token", token, methods=["POST"]),
    Route("/v1/admin/commission-locks/release-expired", release, methods=["POST"]),
])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.post(f"{url}/oauth/token", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the loopback target did not start")


def _bare_job(url: str, *, asynchronous: bool = False) -> Job:
    """A plain job whose body sends the HTTP job's request by hand with httpx: with a
    `Client`, or (`asynchronous`) with an `AsyncClient` in `asyncio.run`, as the HTTP job."""
    tls = httpx.create_ssl_context()

    def headers(ctx: RunContext) -> dict[str, str]:
        return {
            "Authorization": "Bearer bench-token",
            "Idempotency-Key": f"{ctx.job_name}:{ctx.scheduled_for.isoformat()}",
            "X-Cronlock-Run-Id": str(ctx.run_id),
            "X-Cronlock-Scheduled-For": ctx.scheduled_for.isoformat(),
        }

    async def post(ctx: RunContext) -> httpx.Response:
        async with httpx.AsyncClient(verify=tls, timeout=30) as client:
            return await client.post(f"{url}{PATH}", headers=headers(ctx), json=BODY)

    def body(ctx: RunContext) -> dict[str, Any]:
        if asynchronous:
            response = asyncio.run(post(ctx))
        else:
            with httpx.Client(verify=tls, timeout=30) as client:
                response = client.post(f"{url}{PATH}", headers=headers(ctx), json=BODY)
        response.raise_for_status()
        return {"status": response.status_code, "response": response.json()}

    return Job(name="bare-async" if asynchronous else "bare-httpx", body=body, timeout_s=30)


def _runner(store: Store, job: Job, settings: Settings, heartbeat: Heartbeat) -> Any:
    alarm = Alarm()
    store.ensure_jobs([job.name])

    def run(instant: datetime) -> None:
        request = claim_request(
            job, scheduled_for=instant, trigger="schedule", settings=settings, worker_id="bench:1"
        )
        outcome = claim_and_run(
            store, job, request, settings=settings, alarm=alarm, heartbeat=heartbeat
        )
        if getattr(outcome, "status", None) != "SUCCESS":
            raise RuntimeError(f"{job.name} did not succeed at {instant}: {outcome!r}")

    return run


def _time(runs: dict[str, Any]) -> dict[str, list[int]]:
    """Warm up, then time both kinds of run in alternating chunks, each for a new instant."""
    for run in runs.values():
        for i in range(WARMUP_RUNS):
            run(BASE - timedelta(seconds=i + 1))
    samples: dict[str, list[int]] = {label: [] for label in runs}
    size = TIMED_RUNS // CHUNKS
    for first in range(0, TIMED_RUNS, size):
        for label, run in runs.items():
            for i in range(first, first + size):
                started = time.perf_counter_ns()
                run(BASE + timedelta(seconds=i))
                samples[label].append(time.perf_counter_ns() - started)
    return samples


def bench(admin_url: str) -> dict[str, Any]:
    """The HTTP job and the bare httpx call, each a full run, in alternating chunks."""
    process, url = _serve()
    try:
        with scratch_database(admin_url, "bench_http_job", _migrate) as libpq_url:
            settings = Settings.from_env(
                {
                    "MEMBERSHIP_URL": url,
                    "M2M_TOKEN_URL": f"{url}/oauth/token",
                    "M2M_CLIENT_ID": "bench",
                    "M2M_CLIENT_SECRET": "bench-secret",
                }
            )
            database = Database(normalize_database_url(libpq_url), application_name="bench-http")
            store = Store(database)
            heartbeat = Heartbeat(store, interval_s=15, stale_after_s=60)
            job = http_job("http-job", url_env="MEMBERSHIP_URL", path=PATH, body=BODY)
            try:
                with _logging_as_a_worker_does(settings):
                    samples = _time(
                        {
                            "http_job": _runner(store, job, settings, heartbeat),
                            "bare_httpx": _runner(store, _bare_job(url), settings, heartbeat),
                            "bare_async": _runner(
                                store, _bare_job(url, asynchronous=True), settings, heartbeat
                            ),
                        }
                    )
            finally:
                heartbeat.close()
                database.dispose()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return _summary(samples)


@contextmanager
def _logging_as_a_worker_does(settings: Settings) -> Iterator[None]:
    """A worker's JSON logging at INFO, written to /dev/null: formatting lines is part of a
    run. The logging set-up before is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with open(os.devnull, "w") as sink:
        configure_logging("INFO", log_format="json", secrets=settings.secrets)
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
        try:
            yield
        finally:
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)


def _migrate(libpq_url: str) -> None:
    database = Database(normalize_database_url(libpq_url), application_name="bench-migrate")
    try:
        upgrade_to_head(database)
    finally:
        database.dispose()


def _chunked(samples: dict[str, list[int]], first: str, second: str) -> dict[str, Any]:
    """`first` less `second`, chunk by chunk: the median difference (µs), each chunk's, and
    the median ratio."""
    size = TIMED_RUNS // CHUNKS
    chunks = [
        (
            statistics.median(samples[first][i : i + size]),
            statistics.median(samples[second][i : i + size]),
        )
        for i in range(0, TIMED_RUNS, size)
    ]
    differences = [(a - b) / 1000 for a, b in chunks]
    return {
        "difference_us_median": statistics.median(differences),
        "difference_us_chunks": differences,
        "ratio_median": statistics.median(a / b for a, b in chunks),
    }


def _summary(samples: dict[str, list[int]]) -> dict[str, Any]:
    return {
        "runs": TIMED_RUNS,
        "chunks": CHUNKS,
        **{label: summarize(taken) for label, taken in samples.items()},
        "over_bare_httpx": _chunked(samples, "http_job", "bare_httpx"),
        "over_bare_async": _chunked(samples, "http_job", "bare_async"),
        "async_over_sync": _chunked(samples, "bare_async", "bare_httpx"),
    }


def markdown(result: dict[str, Any]) -> str:
    """This figure's section of docs/benchmarks.md."""

    def runs(label: str) -> str:
        return f"{result[label]['median_us']:.0f} / {result[label]['p99_us']:.0f} µs"

    def over(key: str) -> str:
        chunks = result[key]["difference_us_chunks"]
        return (
            f"{result[key]['difference_us_median']:.0f} µs ({min(chunks):.0f}–{max(chunks):.0f});"
            f" {result[key]['ratio_median']:.2f}×"
        )

    return "\n".join(
        [
            SECTION,
            "",
            "| Figure | Value |",
            "|---|---|",
            "| 7. Per-run overhead of an HTTP job against a loopback target, median / p99 |"
            f" {runs('http_job')} |",
            "|    The same POST as a bare httpx call in a plain job's body (`httpx.Client`) |"
            f" {runs('bare_httpx')} |",
            "|    The same POST by hand with `httpx.AsyncClient` in `asyncio.run` |"
            f" {runs('bare_async')} |",
            "|    HTTP job over the bare call: median of chunk differences (min–max); ratio |"
            f" {over('over_bare_httpx')} |",
            f"|    of which httpx's async path over its sync one | {over('async_over_sync')} |",
            f"|    of which the HTTP job's own work | {over('over_bare_async')} |",
            "",
            f"All are full runs through cronlock (claim, body, finish), {result['runs']:,} of",
            f"each after warm-up, alternating in {result['chunks']} chunks, against one target",
            "served by another process on loopback, with a worker's JSON logging written to",
            "/dev/null. The bare calls build a client per run with a shared TLS context and send",
            "the same headers, body and token. The HTTP job's own work is its stop watcher, the",
            "token cache, its result (status, attempts, excerpt), one more log line and its",
            "metrics. `make bench-http` runs this figure alone.",
            *_alone(result.get("environment")),
            "",
        ]
    )


def _alone(env: dict[str, Any] | None) -> list[str]:
    """When the figure was taken in a run of its own, on what."""
    if env is None:
        return []
    return [
        "",
        f"These figures come from a run of their own: PostgreSQL {env['postgresql']}"
        f" ({env['server']}), Python {env['python']}, httpx {env['httpx']},"
        f" {env['cpus']} CPU cores.",
    ]


def _write(result: dict[str, Any]) -> None:
    """Replace this figure in docs/benchmarks.json and its section of docs/benchmarks.md."""
    raw = DOCS / "benchmarks.json"
    figures = json.loads(raw.read_text()) if raw.exists() else {}
    figures["http_job"] = result
    raw.write_text(json.dumps(figures, indent=1) + "\n")
    page = DOCS / "benchmarks.md"
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    if SECTION in text:
        before, _, after = text.partition(SECTION)
        rest = after.split("\n## ", 1)
        text = before + markdown(result) + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + markdown(result)
    page.write_text(text)


def main() -> None:
    """Measure this figure alone, write it into docs/, print it."""
    with postgres_server() as (admin_url, server):
        measured_on = environment(admin_url, server) | {"httpx": httpx.__version__}
        result = bench(admin_url) | {"environment": measured_on}
    _write(result)
    print(markdown(result))


if __name__ == "__main__":
    main()
