"""What the worker exposes to Prometheus, and the one place that updates it.

The label is `job_name`, not `job`: Prometheus sets `job` on every scraped series
and would rename ours to `exported_job`.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app import __version__

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
WORKER = Gauge(
    "cronlock_worker_info",
    "This worker's id and version.",
    ["worker_id", "version"],
    registry=REGISTRY,
)


def describe_worker(worker_id: str) -> None:
    """Publish the worker's identity."""
    WORKER.labels(worker_id=worker_id, version=__version__).set(1)


def loop_went_round() -> None:
    """The loop (or a running job's lease) is alive."""
    LAST_TICK.set(time.time())
