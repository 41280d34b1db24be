"""Runs a person asks for: run a job now, retry a failed run; from the CLI or the console.

Both go through the same claim as a scheduled run (the job's lock, its pre-check,
one live run per job). What differs is who waits: the CLI waits for the lock and
runs the body in its own process; the console claims without waiting (a held lock
is an answer: 409) and runs the body in the background (`BackgroundRuns`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from app.config import Settings
from app.core.claims import Claim, ClaimRequest, ClaimResult
from app.core.job import Job
from app.core.outcomes import Outcome, RunStatus, Trigger
from app.errors import ConfigError, DatabaseError, UnknownJob
from app.registry import JobRegistry, unknown_job_message
from app.runtime.runner import InstantResult, claim_request, follow_claim
from app.runtime.worker import default_worker_id, utc_now
from app.store.facade import Store
from app.store.history import RunRecord

logger = logging.getLogger(__name__)


def run_now_request(
    job: Job,
    settings: Settings,
    *,
    params: Mapping[str, Any] | None,
    dry_run: bool,
    requested_by: str,
    wait_for_lock: bool,
    ignore_pause: bool = False,
) -> ClaimRequest:
    """The claim of a manual run of `job` now (`params` already validated)."""
    return claim_request(
        job,
        scheduled_for=utc_now(),
        trigger=Trigger.MANUAL,
        settings=settings,
        worker_id=default_worker_id(),
        wait_for_lock=wait_for_lock,
        ignore_pause=ignore_pause,
        params=params,
        dry_run=dry_run,
        requested_by=requested_by,
    )


class NotRetryableError(ConfigError):
    """The run named cannot be retried; the message says why and what to do instead."""


def retry_request(
    store: Store,
    registry: JobRegistry,
    settings: Settings,
    run_id: int,
    *,
    requested_by: str,
    wait_for_lock: bool,
) -> tuple[Job, ClaimRequest]:
    """The claim that retries FAILED run `run_id` as its instant's next attempt, with the
    same params and dry-run; NotRetryableError (or UnknownJob) when it cannot be."""
    run = store.get_run(run_id)
    if run is None:
        raise NotRetryableError(f"no run has id {run_id}; `cronlock history --failed` lists them")
    _check_retryable(store, registry, run)
    job = registry.get(run.job_name)
    request = claim_request(
        job,
        scheduled_for=run.scheduled_for,
        trigger=Trigger.MANUAL,
        settings=settings,
        worker_id=default_worker_id(),
        wait_for_lock=wait_for_lock,
        ignore_pause=True,
        retry_run_id=run.id,
        params=run.params,
        dry_run=run.dry_run,
        requested_by=requested_by,
    )
    return job, request


def _check_retryable(store: Store, registry: JobRegistry, run: RunRecord) -> None:
    if run.status != RunStatus.FAILURE:
        raise NotRetryableError(f"run {run.id} is {run.status}; only a FAILURE can be retried")
    if run.job_name not in registry:
        raise UnknownJob(unknown_job_message(run.job_name, registry.names))
    newest = store.latest_attempt(run.job_name, run.scheduled_for)
    if newest.attempt != run.attempt:
        follow = {
            RunStatus.FAILURE: f"retry run {newest.id} instead",
            RunStatus.RUNNING: f"wait for run {newest.id} to finish",
            RunStatus.SUCCESS: "there is nothing left to retry",
        }.get(RunStatus(newest.status), "only a FAILURE can be retried")
        raise NotRetryableError(
            f"run {run.id} is attempt {run.attempt} of its instant, which already has attempt "
            f"{newest.attempt} (run {newest.id}, {newest.status}); {follow}"
        )


class BackgroundRuns:
    """Bodies of runs the console started, each in a thread of this process.

    The claim happens in the caller's thread, so its answer (a run id, a skip, a held
    lock) is known at once; only a won claim's body goes to the pool. Python cannot
    interrupt a thread, so such a body has no SIGALRM timeout: at its timeout its
    `ctx.should_stop()` turns true, and a body that runs on is given up (recorded
    FAILURE) as a worker's would be.
    """

    def __init__(self, store: Store, settings: Settings, *, max_running: int = 4) -> None:
        self.store = store
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="console-run")
        self._running: dict[int, Future[InstantResult]] = {}
        self._lock = threading.Lock()

    def claim_and_start(self, job: Job, request: ClaimRequest) -> ClaimResult:
        """Claim `request` now; a won claim's body starts in the background."""
        claimed = self.store.claim(request)
        if not isinstance(claimed, Claim):
            follow_claim(self.store, job, request, claimed, self.settings)
            return claimed
        future = self._pool.submit(follow_claim, self.store, job, request, claimed, self.settings)
        with self._lock:
            self._running[claimed.run_id] = future
        future.add_done_callback(lambda _: self._forget(claimed.run_id))
        return claimed

    def running(self) -> list[int]:
        """The run ids whose bodies are still going."""
        with self._lock:
            return sorted(self._running)

    def wait(self, timeout_s: float) -> list[int]:
        """Wait up to `timeout_s` for the bodies to end; the run ids still going."""
        with self._lock:
            futures = list(self._running.values())
        wait(futures, timeout=max(timeout_s, 0.0))
        return self.running()

    def close(self, *, grace_s: float) -> None:
        """Take no more runs; give the bodies going `grace_s` to end, then record each
        still going FAILURE (fenced by its run id: a body that ends later changes
        nothing), so no run is left RUNNING by this process's exit."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for run_id in self.wait(grace_s):
            stopped = Outcome(
                RunStatus.FAILURE,
                error=f"the process running it stopped (its body ran past the {grace_s:g}s grace)",
            )
            try:
                self.store.finish(run_id, stopped)
            except DatabaseError as exc:
                logger.warning(
                    "could not record run %s as stopped: %s; it goes stale and is swept",
                    run_id,
                    exc.message,
                    extra={"event": "console_run_not_recorded", "run_id": run_id},
                )

    def _forget(self, run_id: int) -> None:
        with self._lock:
            self._running.pop(run_id, None)
