"""What the worker exposes to Prometheus, and the one place that updates it.

The label is `job_name`, not `job`: Prometheus sets `job` on every scraped series
and would rename ours to `exported_job`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app import __version__
from app.core.outcomes import RunStatus

REGISTRY = CollectorRegistry()

RUNS = Counter(
    "cronlock_runs",
    "Runs this worker recorded, by job and outcome (success, failure, skipped, missed).",
    ["job_name", "outcome"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "cronlock_run_duration_seconds",
    "How long job bodies ran.",
    ["job_name"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "cronlock_last_success_timestamp_seconds",
    "When the job last succeeded on any worker (from history at start, then this"
    " worker's own successes); when it was registered if it never has.",
    ["job_name"],
    registry=REGISTRY,
)
RUNNING = Gauge(
    "cronlock_running", "1 while this worker runs the job.", ["job_name"], registry=REGISTRY
)
SKIPPED = Counter(
    "cronlock_claims_skipped",
    "Claims that did not start a run, by reason "
    "(locked, handled, running, pre_check, upstream, paused).",
    ["job_name", "reason"],
    registry=REGISTRY,
)
LAST_FAILURE = Gauge(
    "cronlock_last_failure_timestamp_seconds",
    "When this worker last recorded a FAILURE of the job (selects the freshest streak).",
    ["job_name"],
    registry=REGISTRY,
)

CONSECUTIVE_FAILURES = Gauge(
    "cronlock_consecutive_failures",
    "Failures in a row of the job across replicas, read from the table after this"
    " worker's last FAILURE of it (0 after its last SUCCESS).",
    ["job_name"],
    registry=REGISTRY,
)
PERIOD = Gauge(
    "cronlock_job_period_seconds",
    "The job's schedule period, for dead-man alerts.",
    ["job_name"],
    registry=REGISTRY,
)
LAST_TICK = Gauge(
    "cronlock_last_tick_timestamp_seconds",
    "When the worker's loop last went round (or a running job's lease was renewed).",
    registry=REGISTRY,
)
HTTP_CALLS = Counter(
    "cronlock_http_calls",
    "Requests HTTP jobs sent, retries included, by job, target host and what the target"
    " answered (its status code, or timeout, connect_error).",
    ["job_name", "target_host", "target_status"],
    registry=REGISTRY,
)
HTTP_CALL_DURATION = Histogram(
    "cronlock_http_call_duration_seconds",
    "How long each request of an HTTP job took, to its last byte read.",
    ["job_name", "target_host"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
WORKER = Gauge(
    "cronlock_worker_info",
    "This worker's id and version.",
    ["worker_id", "version"],
    registry=REGISTRY,
)


def describe_worker(worker_id: str) -> None:
    """Publish the worker's identity."""
    WORKER.labels(worker_id=worker_id, version=__version__).set(1)


def describe_job(
    job_name: str,
    *,
    period_s: float,
    last_success_at: datetime | None = None,
    failures: int | None = None,
    last_failure_at: datetime | None = None,
) -> None:
    """Publish a job's period and its streak as the table holds it (at start-up)."""
    PERIOD.labels(job_name=job_name).set(period_s)
    if last_success_at is not None:
        LAST_SUCCESS.labels(job_name=job_name).set(last_success_at.timestamp())
    if failures is not None:
        CONSECUTIVE_FAILURES.labels(job_name=job_name).set(failures)
    if last_failure_at is not None:
        # The failing alert compares it with the last success: without it a
        # restart would clear an open page until the next failure.
        LAST_FAILURE.labels(job_name=job_name).set(last_failure_at.timestamp())


def run_ended(job_name: str, status: RunStatus, duration_ms: float) -> None:
    """Count a SUCCESS or FAILURE this worker recorded, and time it."""
    RUNS.labels(job_name=job_name, outcome=status.lower()).inc()
    DURATION.labels(job_name=job_name).observe(duration_ms / 1000)
    if status == RunStatus.SUCCESS:
        LAST_SUCCESS.labels(job_name=job_name).set(time.time())
        CONSECUTIVE_FAILURES.labels(job_name=job_name).set(0)
    else:
        LAST_FAILURE.labels(job_name=job_name).set(time.time())


def failure_streak(job_name: str, failures: int | None) -> None:
    """The job's failures in a row after a FAILURE: as counted in the table, or, when the
    table could not be read, one more than this worker last knew."""
    gauge = CONSECUTIVE_FAILURES.labels(job_name=job_name)
    if failures is None:
        gauge.inc()
    else:
        gauge.set(failures)


def outcomes_recorded(job_name: str, outcome: str, count: int = 1) -> None:
    """Count outcomes written without a body run: `missed` or `skipped`."""
    RUNS.labels(job_name=job_name, outcome=outcome).inc(count)


def claim_skipped(job_name: str, reason: str) -> None:
    """A claim that started no run, by reason."""
    SKIPPED.labels(job_name=job_name, reason=reason).inc()


@contextmanager
def running(job_name: str) -> Iterator[None]:
    """1 while the block runs the job's body."""
    gauge = RUNNING.labels(job_name=job_name)
    gauge.set(1)
    try:
        yield
    finally:
        gauge.set(0)


def http_call_answered(job_name: str, target_host: str, target_status: str, seconds: float) -> None:
    """Count one request of an HTTP job, and time it."""
    HTTP_CALLS.labels(job_name=job_name, target_host=target_host, target_status=target_status).inc()
    HTTP_CALL_DURATION.labels(job_name=job_name, target_host=target_host).observe(seconds)


def loop_went_round() -> None:
    """The loop (or a running job's lease) is alive."""
    LAST_TICK.set(time.time())
