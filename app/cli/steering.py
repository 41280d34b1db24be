"""Commands that act: run a job now, retry a failed run, pause and resume."""

from __future__ import annotations

import argparse
import logging

from app.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    Deployment,
    known_job,
    ready_database,
)
from app.config import env_prefix
from app.core.claims import Skip, Wait
from app.errors import ConfigError, UnknownJob
from app.registry import (
    unknown_job_message,
)
from app.runtime.execution import RunOutcome
from app.runtime.runner import AttemptResult, attempt_run, claim_request
from app.runtime.worker import default_worker_id, utc_now
from app.store.claiming import ensure_jobs
from app.store.control import operator, pause_all, pause_job, resume_all, resume_job
from app.store.history import (
    get_run,
    latest_attempt,
)
from app.store.models import RunStatus, Trigger

logger = logging.getLogger(__name__)


def cmd_run(args: argparse.Namespace, deployment: Deployment) -> int:
    """Run one job now, through the same lock and pre-checks as the schedule."""
    job = deployment.registry.get(args.job)
    configured = next(j for j in deployment.jobs if j.name == job.name)
    if not configured.enabled and not args.force:
        raise ConfigError(
            f"job {job.name!r} is disabled by {env_prefix(job.name)}_ENABLED; "
            "enable it, or pass --force to run it anyway"
        )
    database = ready_database(deployment.settings)
    ensure_jobs(database, [job.name])
    request = claim_request(
        job,
        scheduled_for=utc_now(),
        trigger=Trigger.MANUAL,
        settings=deployment.settings,
        worker_id=default_worker_id(),
        wait_for_lock=True,
        ignore_pause=args.force,
    )
    result = attempt_run(database, job, request, settings=deployment.settings)
    return _print_attempt(job.name, result)


def _print_attempt(job_name: str, result: AttemptResult) -> int:
    if isinstance(result, RunOutcome):
        detail = f": {result.error}" if result.error else ""
        print(
            f"run {result.run_id} of {job_name}: {result.status} "
            f"in {result.duration_ms:.0f} ms{detail}"
        )
        return EXIT_JOB_FAILED if result.status == RunStatus.FAILURE else EXIT_OK
    reason = result.reason if isinstance(result, Skip | Wait) else "another worker holds its lock"
    print(f"{job_name} skipped: {reason}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, deployment: Deployment) -> int:
    """Re-run a FAILED run's instant as a new attempt, through the lock."""
    database = ready_database(deployment.settings)
    run = get_run(database, args.run_id)
    if run is None:
        raise ConfigError(f"no run has id {args.run_id}; `cronlock history --failed` lists them")
    if run.status != RunStatus.FAILURE:
        raise ConfigError(f"run {run.id} is {run.status}; only a FAILURE can be retried")
    if run.job_name not in deployment.registry:
        raise UnknownJob(unknown_job_message(run.job_name, deployment.registry.names))
    newest = latest_attempt(database, run.job_name, run.scheduled_for)
    if newest.attempt != run.attempt:
        follow = {
            RunStatus.FAILURE: f"retry run {newest.id} instead",
            RunStatus.RUNNING: f"wait for run {newest.id} to finish",
            RunStatus.SUCCESS: "there is nothing left to retry",
        }.get(RunStatus(newest.status), "only a FAILURE can be retried")
        raise ConfigError(
            f"run {run.id} is attempt {run.attempt} of its instant, which already has attempt "
            f"{newest.attempt} (run {newest.id}, {newest.status}); {follow}"
        )
    job = deployment.registry.get(run.job_name)
    request = claim_request(
        job,
        scheduled_for=run.scheduled_for,
        trigger=Trigger.MANUAL,
        settings=deployment.settings,
        worker_id=default_worker_id(),
        wait_for_lock=True,
        ignore_pause=True,
        retry_run_id=run.id,
    )
    result = attempt_run(database, job, request, settings=deployment.settings)
    return _print_attempt(run.job_name, result)


def cmd_pause(args: argparse.Namespace, deployment: Deployment) -> int:
    """Pause one job, or all, on every replica."""
    if bool(args.job) == bool(args.all):
        raise ConfigError("name one JOB to pause, or pass --all")
    database = ready_database(deployment.settings)
    if args.all:
        pause_all(database, reason=args.reason, paused_by=operator())
        print(f"all jobs paused: {args.reason}")
    else:
        name = known_job(database, deployment, args.job)
        pause_job(database, name, reason=args.reason, paused_by=operator())
        print(f"{name} paused: {args.reason}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, deployment: Deployment) -> int:
    """Resume one job, or lift `pause --all`."""
    if bool(args.job) == bool(args.all):
        raise ConfigError("name one JOB to resume, or pass --all")
    database = ready_database(deployment.settings)
    if args.all:
        was = resume_all(database)
        print("all jobs resumed" if was else "jobs were not paused with --all")
    else:
        name = known_job(database, deployment, args.job)
        print(f"{name} resumed" if resume_job(database, name) else f"{name} was not paused")
    return EXIT_OK
