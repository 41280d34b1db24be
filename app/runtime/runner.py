"""Claiming one (job, instant) and running what was won: the path of every run.

Shared by the worker's tick and `cronlock run`, so a manual run goes through the
same lock and pre-checks as a scheduled one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.core.claims import (
    Claim,
    ClaimRequest,
    ClaimResult,
    ClaimUnacknowledged,
    NextClaim,
    PreCheckFailed,
    Skip,
    Wait,
)
from app.core.job import Job, PreCheck
from app.core.outcomes import RunOutcome, RunStatus
from app.core.redaction import scrub
from app.errors import DatabaseError
from app.ops.logs import job_scope
from app.ops.observe import observe_claim, observe_unstarted_failure
from app.runtime.context import PreCheckContext
from app.runtime.execution import execute
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat
from app.runtime.unanswered import resume_claim
from app.store.facade import Store

logger = logging.getLogger(__name__)

InstantResult = RunOutcome | Skip | Wait | None
"""None: another worker holds the job's lock; try again later."""


def claim_request(
    job: Job,
    *,
    scheduled_for: datetime,
    trigger: str,
    settings: Settings,
    worker_id: str,
    expires_at: datetime | None = None,
    run_after: Sequence[str] = (),
    wait_for_lock: bool = False,
    ignore_pause: bool = False,
    retry_run_id: int | None = None,
    params: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    requested_by: str | None = None,
) -> ClaimRequest:
    """What to claim for `job` at `scheduled_for`, with the job's rules and pre-check.

    `retry_run_id` names a FAILED run of that instant to retry now (`cronlock retry`).
    `params` are already validated by the job's model (`app.core.params`).
    """
    pre_check = job.pre_check

    def check(session: Session, pre_check: PreCheck) -> str | None:
        context = PreCheckContext(
            job_name=job.name,
            scheduled_for=scheduled_for,
            trigger=trigger,
            session=session,
            settings=settings,
        )
        with job_scope(job.name):
            reason = pre_check(context)
        if reason is None:
            return None
        if not isinstance(reason, str):
            raise TypeError(
                f"a pre-check returns a reason to skip (str) or None to run, "
                f"not {type(reason).__name__}"
            )
        # Stored on the SKIPPED run and shown by `history`: no secret goes with it.
        return scrub(reason, settings.secrets)

    return ClaimRequest(
        job_name=job.name,
        scheduled_for=scheduled_for,
        trigger=trigger,
        worker_id=worker_id,
        stale_after_s=settings.stale_threshold_s,
        expires_at=expires_at,
        retries=job.retries,
        run_after=run_after,
        pre_check=None if pre_check is None else partial(check, pre_check=pre_check),
        wait_for_lock=wait_for_lock,
        ignore_pause=ignore_pause,
        retry_run_id=retry_run_id,
        redact=lambda text: scrub(text, settings.secrets),
        params=params,
        dry_run=dry_run,
        requested_by=requested_by,
    )


def claim_and_run(
    store: Store,
    job: Job,
    request: ClaimRequest,
    *,
    settings: Settings,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> InstantResult:
    """Claim `request` (see `claim_request`) and, if this worker wins, run it to an outcome.

    A claim whose COMMIT goes unanswered is asked about at once, once: a command
    has no later pass to settle it in, and its run would look live until stale.
    A stop that cannot wait interrupts the wait for the lock, but once the claim
    has committed it lets the run be recorded (`Alarm.protected`).
    """
    alarm = alarm or Alarm()
    try:
        with job_scope(job.name):
            claimed: ClaimResult | RunOutcome = store.claim(request)
    except ClaimUnacknowledged as unanswered:
        try:
            claimed = resume_claim(store, job, unanswered, settings)
        except DatabaseError:
            raise unanswered  # noqa: B904 - it names the run it may leave; its cause says why
        if claimed is None:
            with job_scope(job.name):
                claimed = store.claim(request)
    if isinstance(claimed, RunOutcome):
        return claimed
    with alarm.protected():
        return follow_claim(
            store, job, request, claimed, settings, alarm=alarm, heartbeat=heartbeat
        )


@dataclass(frozen=True)
class NextRun:
    """What `claim_next_and_run`'s claim found (see NextClaim), and how its attempt ended."""

    claim: NextClaim
    result: InstantResult = None


def claim_next_and_run(
    store: Store,
    candidates: Sequence[tuple[Job, ClaimRequest]],
    *,
    settings: Settings,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> NextRun:
    """Claim the first candidate, in order, that is neither settled nor held, and run it.

    The claim takes no lock it must wait for (SKIP LOCKED), so a stop that cannot
    wait is held off for the whole of it: a run claimed is always recorded.
    """
    alarm = alarm or Alarm()
    with alarm.protected():
        return _claim_next_and_run(store, candidates, settings, alarm, heartbeat)


def _claim_next_and_run(
    store: Store,
    candidates: Sequence[tuple[Job, ClaimRequest]],
    settings: Settings,
    alarm: Alarm,
    heartbeat: Heartbeat | None,
) -> NextRun:
    picked = store.claim_next([request for _, request in candidates])
    for position, skip in picked.settled.items():
        job, request = candidates[position]
        follow_claim(store, job, request, skip, settings)
    for position in picked.held:
        job, request = candidates[position]
        follow_claim(store, job, request, None, settings)
    if picked.position is None:
        return NextRun(picked)
    job, request = candidates[picked.position]
    result = follow_claim(
        store, job, request, picked.result, settings, alarm=alarm, heartbeat=heartbeat
    )
    return NextRun(picked, result)


def follow_claim(
    store: Store,
    job: Job,
    request: ClaimRequest,
    claimed: ClaimResult,
    settings: Settings,
    *,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> InstantResult:
    """Count and log what the claim found; run the body if the claim was won."""
    with job_scope(job.name):
        observe_claim(job.name, claimed)
        if isinstance(claimed, Skip):
            logger.info(
                "skipped %s: %s",
                request.scheduled_for.isoformat(),
                claimed.reason,
                extra={
                    "event": "run_skipped",
                    "job": job.name,
                    "scheduled_for": request.scheduled_for.isoformat(),
                    "reason": claimed.reason,
                    "recorded": claimed.recorded,
                },
            )
            return claimed
        if isinstance(claimed, PreCheckFailed):
            observe_unstarted_failure(store, settings, job.name, request.worker_id)
            return RunOutcome(claimed.run_id, RunStatus.FAILURE, 0.0, claimed.error)
        if isinstance(claimed, Claim):
            return execute(
                store,
                job,
                claimed,
                settings,
                expires_at=request.expires_at,
                alarm=alarm or Alarm(),
                heartbeat=heartbeat,
            )
        return claimed
