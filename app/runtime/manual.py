"""Runs a person asks for: run a job now, retry a failed run; from the CLI or the console.

Both go through the same claim as a scheduled run (the job's lock, its pre-check,
one live run per job). What differs is who waits: the CLI waits for the lock and
runs the body in its own process; the console claims without waiting (a held lock
is an answer: 409) and runs the body in the background (`BackgroundRuns`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from app.config import Settings
from app.core.claims import Claim, ClaimRequest, ClaimResult
from app.core.job import Job
from app.core.outcomes import Outcome, RunStatus, Trigger
from app.errors import ConfigError, CronlockError, DatabaseError, UnknownJob
from app.registry import JobRegistry, unknown_job_message
from app.runtime.lease import Heartbeat
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
    """Bodies of runs the console started, each in a daemon thread of this process.

    The claim happens in the caller's thread, so its answer (a run id, a skip, a held
    lock) is known at once; only a won claim's body goes to a thread (at most one per
    job: the claim allows one live run each). Python cannot interrupt a thread, so
    such a body has no SIGALRM timeout: at its timeout `ctx.should_stop()` turns
    true, and a body that runs on past the grace is given up (recorded FAILURE) as a
    worker's would be.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._running: dict[int, tuple[threading.Thread, Heartbeat]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def claim_and_start(self, job: Job, request: ClaimRequest) -> ClaimResult:
        """Claim `request` now; a won claim's body starts in the background."""
        if self._closed:
            raise StoppingError("this process is stopping; start the run on another")
        claimed = self.store.claim(request)
        if not isinstance(claimed, Claim):
            follow_claim(self.store, job, request, claimed, self.settings)
            return claimed
        heartbeat = Heartbeat(
            self.store,
            interval_s=self.settings.heartbeat_interval_s,
            stale_after_s=self.settings.stale_threshold_s,
        )
        thread = threading.Thread(
            target=self._run,
            args=(job, request, claimed, heartbeat),
            name=f"console-run-{claimed.run_id}",
            daemon=True,  # a body that never ends must not keep the process from exiting
        )
        with self._lock:
            self._running[claimed.run_id] = (thread, heartbeat)
        thread.start()
        return claimed

    def _run(
        self, job: Job, request: ClaimRequest, claimed: Claim, heartbeat: Heartbeat
    ) -> InstantResult:
        timer = None
        if job.timeout_s is not None:
            timer = threading.Timer(job.timeout_s, heartbeat.ask_to_stop)
            timer.daemon = True
            timer.start()
        try:
            return follow_claim(
                self.store, job, request, claimed, self.settings, heartbeat=heartbeat
            )
        except BaseException:  # the outcome is recorded; nothing is left to raise to
            logger.exception(
                "run %s of %s started from the console ended abnormally",
                claimed.run_id,
                job.name,
                extra={"event": "console_run_raised", "run_id": claimed.run_id},
            )
            return None
        finally:
            if timer is not None:
                timer.cancel()
            heartbeat.close()
            with self._lock:
                self._running.pop(claimed.run_id, None)

    def running(self) -> list[int]:
        """The run ids whose bodies are still going."""
        with self._lock:
            return sorted(self._running)

    def wait(self, timeout_s: float) -> list[int]:
        """Wait up to `timeout_s` for the bodies to end; the run ids still going."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            threads = [thread for thread, _ in self._running.values()]
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        return self.running()

    def close(self, *, grace_s: float) -> None:
        """Take no more runs; ask the bodies going to stop (`ctx.should_stop()`) and give
        them `grace_s` to end, then record each still going FAILURE (fenced by its run
        id: a body that ends later changes nothing), so no run is left RUNNING by this
        process's exit."""
        self._closed = True
        with self._lock:
            heartbeats = [heartbeat for _, heartbeat in self._running.values()]
        for heartbeat in heartbeats:
            heartbeat.ask_to_stop()
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


class StoppingError(CronlockError):
    """The process is stopping and takes no new run (answered 503)."""
