"""Per-run overhead of an HTTP job: `http_job` against the same call as a bare httpx POST.

Both kinds of run go through cronlock's real path (claim, body under the alarm,
finish) on the same database, against the same loopback target served by another
process, and alternate in chunks so machine noise hits both. The floor is a plain
job whose body sends the same POST (same headers, body and token) with a new
`httpx.Client` per run, as a job body would; it shares one TLS context, as the
HTTP job does, so loading the CA bundle is not counted against either. What is
left is the HTTP job's own work: its event loop and watcher, the token cache,
its headers, the excerpt kept as the result, its log line and metrics.

``python -m benchmarks.http_job`` (or ``make bench-http``) runs this figure alone
and rewrites its section of docs/benchmarks.md and its key in benchmarks.json;
``make bench`` runs it with the rest.
"""

from __future__ import annotations

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


def _bare_job(url: str) -> Job:
    """A plain job whose body sends the HTTP job's request by hand with httpx."""
    tls = httpx.create_ssl_context()

    def body(ctx: RunContext) -> dict[str, Any]:
        headers = {
            "Authorization": "Bearer bench-token",
            "Idempotency-Key": f"{ctx.job_name}:{ctx.scheduled_for.isoformat()}",
            "X-Cronlock-Run-Id": str(ctx.run_id),
            "X-Cronlock-Scheduled-For": ctx.scheduled_for.isoformat(),
        }
        with httpx.Client(verify=tls, timeout=30) as client:
            response = client.post(f"{url}{PATH}", headers=headers, json=BODY)
        response.raise_for_status()
        return {"status": response.status_code, "response": response.json()}

    return Job(name="bare-httpx", body=body, timeout_s=30)


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


def _summary(samples: dict[str, list[int]]) -> dict[str, Any]:
    size = TIMED_RUNS // CHUNKS
    ours, floor = samples["http_job"], samples["bare_httpx"]
    chunks = [(ours[i : i + size], floor[i : i + size]) for i in range(0, TIMED_RUNS, size)]
    differences = [(statistics.median(a) - statistics.median(b)) / 1000 for a, b in chunks]
    ratios = [statistics.median(a) / statistics.median(b) for a, b in chunks]
    return {
        "runs": TIMED_RUNS,
        "chunks": CHUNKS,
        "http_job": summarize(ours),
        "bare_httpx": summarize(floor),
        "overhead_us_median": statistics.median(differences),
        "overhead_us_chunks": differences,
        "ratio_median": statistics.median(ratios),
    }


def markdown(result: dict[str, Any]) -> str:
    """This figure's section of docs/benchmarks.md."""
    ours, floor = result["http_job"], result["bare_httpx"]
    chunks = result["overhead_us_chunks"]
    return "\n".join(
        [
            SECTION,
            "",
            "| Figure | Value |",
            "|---|---|",
            "| 7. Per-run overhead of an HTTP job against a loopback target, median / p99 |"
            f" {ours['median_us']:.0f} / {ours['p99_us']:.0f} µs |",
            "|    The same POST as a bare httpx call in a plain job's body, median / p99 |"
            f" {floor['median_us']:.0f} / {floor['p99_us']:.0f} µs |",
            "|    HTTP job's own cost: median of chunk differences (min–max of chunks) |"
            f" {result['overhead_us_median']:.0f} µs ({min(chunks):.0f}–{max(chunks):.0f}) |",
            "|    HTTP job / bare call, whole run: median of chunk ratios |"
            f" {result['ratio_median']:.2f} |",
            "",
            f"Both are full runs through cronlock (claim, body, finish), {result['runs']:,} of each"
            f" after warm-up, alternating in {result['chunks']} chunks, against one target",
            "served by another process on loopback. The bare call builds an `httpx.Client` per",
            "run with a shared TLS context and sends the same headers, body and token; the HTTP",
            "job adds its event loop and stop watcher, the token cache, its result (status,",
            "attempts, excerpt), one log line and its metrics. `make bench-http` runs this alone.",
            "",
        ]
    )


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
        print(json.dumps(environment(admin_url, server)), flush=True)
        result = bench(admin_url)
    _write(result)
    print(markdown(result))


if __name__ == "__main__":
    main()
