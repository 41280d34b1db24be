"""Commands that act: run a job now, retry a failed run, pause and resume."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from app.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    Deployment,
    known_job,
    ready_store,
)
from app.config import env_prefix
from app.core.claims import ClaimRequest, Skip, Wait
from app.core.display import printable
from app.core.job import Job
from app.core.outcomes import RunOutcome, RunStatus
from app.core.params import params_from_cli, validate_params
from app.core.redaction import scrub
from app.errors import ConfigError
from app.runtime.interrupts import Alarm
from app.runtime.manual import retry_request, run_now_request
from app.runtime.runner import InstantResult, claim_and_run
from app.store.control import operator
from app.store.facade import Store

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_REASON_CHARS = 500


def cmd_run(args: argparse.Namespace, deployment: Deployment) -> int:
    """Run one job now, through the same lock and pre-checks as the schedule."""
    job = deployment.registry.get(args.job)
    configured = next(j for j in deployment.jobs if j.name == job.name)
    if not configured.enabled and not args.force:
        raise ConfigError(
            f"job {job.name!r} is disabled by {env_prefix(job.name)}_ENABLED; "
            "enable it, or pass --force to run it anyway"
        )
    # Checked before anything is written: a bad field is exit 2, one line each.
    params = validate_params(job.name, job.params, params_from_cli(args.param, args.params_json))
    store = ready_store(deployment.settings)
    store.ensure_jobs([job.name])
    request = run_now_request(
        job,
        deployment.settings,
        params=params,
        dry_run=args.dry_run,
        requested_by=operator(),
        wait_for_lock=True,
        ignore_pause=args.force,
    )
    return _run_now(store, job, request, deployment)


def _run_now(store: Store, job: Job, request: ClaimRequest, deployment: Deployment) -> int:
    """Claim and run in this process; SIGINT or SIGTERM interrupts the body, whose run is
    recorded FAILURE, and the command then exits 130 or 143."""
    alarm = Alarm()
    with stop_signals_interrupt(alarm) as received:
        result = claim_and_run(store, job, request, settings=deployment.settings, alarm=alarm)
    code = _print_result(job.name, result)
    if received:
        print(f"cronlock: interrupted by {signal.Signals(received[0]).name}", file=sys.stderr)
        return 128 + received[0]
    return code


@contextmanager
def stop_signals_interrupt(alarm: Alarm) -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM stop the command at once: a running body is
    interrupted (its run ends FAILURE), a run being set up or recorded finishes first;
    elsewhere StopNow is raised. Yields the signals seen."""
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        alarm.stop_now(f"interrupted by {signal.Signals(signum).name}", exit_code=128 + signum)

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _print_result(job_name: str, result: InstantResult) -> int:
    if isinstance(result, RunOutcome):
        detail = f": {printable(result.error)}" if result.error else ""
        print(
            f"run {result.run_id} of {job_name}: {result.status} "
            f"in {result.duration_ms:.0f} ms{detail}"
        )
        return EXIT_JOB_FAILED if result.status == RunStatus.FAILURE else EXIT_OK
    reason = result.reason if isinstance(result, Skip | Wait) else "another worker holds its lock"
    print(f"{job_name} skipped: {printable(reason)}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, deployment: Deployment) -> int:
    """Re-run a FAILED run's instant as a new attempt, through the lock."""
    store = ready_store(deployment.settings)
    job, request = retry_request(
        store,
        deployment.registry,
        deployment.settings,
        args.run_id,
        requested_by=operator(),
        wait_for_lock=True,
    )
    return _run_now(store, job, request, deployment)


def cmd_pause(args: argparse.Namespace, deployment: Deployment) -> int:
    """Pause one job, or all, on every replica."""
    if bool(args.job) == bool(args.all):
        raise ConfigError("name one JOB to pause, or pass --all")
    if not args.reason.strip() or len(args.reason) > MAX_REASON_CHARS:
        raise ConfigError(
            f"--reason is {len(args.reason)} characters; give one of 1 to {MAX_REASON_CHARS} "
            "(it is shown in every skipped run and in `cronlock jobs`)"
        )
    store = ready_store(deployment.settings)
    # Stored, and shown by `jobs` and in every SKIPPED run: no secret goes with it.
    reason = scrub(args.reason, deployment.settings.secrets)
    if args.all:
        store.pause_all(reason=reason, paused_by=operator())
        print(f"all jobs paused: {printable(reason)}")
    else:
        name = known_job(store, deployment, args.job)
        store.pause_job(name, reason=reason, paused_by=operator())
        print(f"{name} paused: {printable(reason)}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, deployment: Deployment) -> int:
    """Resume one job, or lift `pause --all`."""
    if bool(args.job) == bool(args.all):
        raise ConfigError("name one JOB to resume, or pass --all")
    store = ready_store(deployment.settings)
    if args.all:
        was = store.resume_all()
        print("all jobs resumed" if was else "jobs were not paused with --all")
    else:
        name = known_job(store, deployment, args.job)
        print(f"{name} resumed" if store.resume_job(name) else f"{name} was not paused")
    return EXIT_OK
