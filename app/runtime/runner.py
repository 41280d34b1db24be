"""One attempt at one (job, instant): claim it, run the body, record the outcome.

Shared by the worker's tick and `cronlock run`, so a manual run goes through the
same lock and pre-checks as a scheduled one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

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
from app.core.job import Job, PreCheck, PreCheckContext
from app.errors import DatabaseError
from app.ops import metrics
from app.ops.alerts import after_run
from app.ops.logs import job_scope, scrub
from app.runtime.execution import RunOutcome, count_outcome, execute
from app.runtime.interrupts import Alarm
from app.runtime.lease import MAX_RENEWAL_WAIT_S, Heartbeat
from app.store.claiming import claim_next, claim_run
from app.store.database import Database
from app.store.models import RunStatus
from app.store.runs import Outcome, finish_held, finish_run, renew_lease

logger = logging.getLogger(__name__)

# Why a claim whose COMMIT went unanswered is given up instead of run (`resume_claim`).
NEXT_INSTANT_CAME = "the job's next instant came before the database answered again"
WORKER_STOPPING = "the worker was stopping"


AttemptResult = RunOutcome | Skip | Wait | None
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
) -> ClaimRequest:
    """What to claim for `job` at `scheduled_for`, with the job's rules and pre-check.

    `retry_run_id` names a FAILED run of that instant to retry now (`cronlock retry`).
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
            return pre_check(context)

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
    )


def attempt_run(
    database: Database,
    job: Job,
    request: ClaimRequest,
    *,
    settings: Settings,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> AttemptResult:
    """Claim `request` (see `claim_request`) and, if this worker wins, run it to an outcome.

    A claim whose COMMIT goes unanswered is asked about at once, once: a command
    has no later pass to settle it in, and its run would look live until stale.
    """
    try:
        with job_scope(job.name):
            claimed: ClaimResult | RunOutcome = claim_run(database, request)
    except ClaimUnacknowledged as unanswered:
        try:
            claimed = resume_claim(database, job, unanswered, settings)
        except DatabaseError:
            raise unanswered  # noqa: B904 - it names the run it may leave; its cause says why
        if claimed is None:
            with job_scope(job.name):
                claimed = claim_run(database, request)
    if isinstance(claimed, RunOutcome):
        return claimed
    return _follow(database, job, request, claimed, settings, alarm=alarm, heartbeat=heartbeat)


@dataclass(frozen=True)
class NextAttempt:
    """What `attempt_next`'s claim found (see NextClaim), and how its attempt ended."""

    claim: NextClaim
    result: AttemptResult = None


def attempt_next(
    database: Database,
    candidates: Sequence[tuple[Job, ClaimRequest]],
    *,
    settings: Settings,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> NextAttempt:
    """Claim the first candidate, in order, that is neither settled nor held, and run it."""
    picked = claim_next(database, [request for _, request in candidates])
    for position, skip in picked.settled.items():
        job, request = candidates[position]
        _follow(database, job, request, skip, settings)
    for position in picked.held:
        job, request = candidates[position]
        _follow(database, job, request, None, settings)
    if picked.position is None:
        return NextAttempt(picked)
    job, request = candidates[picked.position]
    result = _follow(
        database, job, request, picked.result, settings, alarm=alarm, heartbeat=heartbeat
    )
    return NextAttempt(picked, result)


def resume_claim(
    database: Database,
    job: Job,
    unanswered: ClaimUnacknowledged,
    settings: Settings,
    *,
    give_up: str | None = None,
) -> Claim | RunOutcome | None:
    """Settle a claim whose COMMIT went unanswered, now that the database answers.

    If the claim did commit, its run is RUNNING under this worker and nobody is
    running it. Returns the Claim when it is this worker's to run now. With
    `give_up` (why not), the run is ended as the instant would have been without
    it (MISSED, or for a retry FAILURE, which `cronlock retry` can take), and that
    outcome returned. None when there is no such run (the claim rolled back, or its
    heartbeat went stale and another worker took it over): the instant is claimed
    afresh.
    """
    claim = unanswered.claim
    fields = {
        "job": job.name,
        "run_id": claim.run_id,
        "scheduled_for": claim.scheduled_for.isoformat(),
    }
    with job_scope(job.name):
        if give_up is not None:
            why = unanswered_because(give_up)
            ending = (
                Outcome(RunStatus.MISSED, error=f"missed: {why}")
                if claim.attempt == 1
                else Outcome(RunStatus.FAILURE, error=f"retry not run: {why}")
            )
            if not finish_run(database, claim.run_id, ending).landed and not finish_held(
                database, claim.run_id, [ending]
            ):
                return None
            if ending.status == RunStatus.FAILURE:
                count_outcome(job.name, ending.status, 0.0)
                _failed_unstarted(database, settings, job.name, claim.worker_id)
            else:
                metrics.RUNS.labels(job_name=job.name, outcome="missed").inc()
            logger.warning(
                "run %s: %s",
                claim.run_id,
                ending.error,
                extra={"event": "claim_unanswered", **fields, "outcome": ending.status},
            )
            return RunOutcome(claim.run_id, ending.status, 0.0, ending.error)
        # The renewal lands only on a RUNNING run, and a takeover waits for it on the
        # row (or it for the takeover): exactly one of the two goes on with the run.
        wait_s = min(settings.heartbeat_interval_s, MAX_RENEWAL_WAIT_S)
        if not renew_lease(database, claim.run_id, timeout_s=wait_s):
            return None
        logger.warning(
            "run %s: its claim committed though the answer was lost; running it now",
            claim.run_id,
            extra={"event": "claim_unanswered", **fields, "outcome": RunStatus.RUNNING},
        )
        return claim


def unanswered_because(reason: str) -> str:
    """Why the run of an unanswered claim was given up, as stored."""
    return f"its claim's commit went unanswered, and {reason}"


def run_claim(
    database: Database,
    job: Job,
    request: ClaimRequest,
    claim: Claim,
    settings: Settings,
    *,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> RunOutcome:
    """Run a claimed run's body under its lease; record and return its outcome."""
    with job_scope(job.name):
        return execute(
            database,
            job,
            claim,
            settings,
            expires_at=request.expires_at,
            alarm=alarm or Alarm(),
            heartbeat=heartbeat,
        )


def _follow(
    database: Database,
    job: Job,
    request: ClaimRequest,
    claimed: ClaimResult,
    settings: Settings,
    *,
    alarm: Alarm | None = None,
    heartbeat: Heartbeat | None = None,
) -> AttemptResult:
    """Count and log what the claim found; run the body if the claim was won."""
    with job_scope(job.name):
        _count_claim(job.name, claimed)
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
            _failed_unstarted(database, settings, job.name, request.worker_id)
            return RunOutcome(claimed.run_id, RunStatus.FAILURE, 0.0, claimed.error)
        if isinstance(claimed, Claim):
            return run_claim(
                database, job, request, claimed, settings, alarm=alarm, heartbeat=heartbeat
            )
        return claimed


def _failed_unstarted(
    database: Database, settings: Settings, job_name: str, worker_id: str
) -> None:
    """Count a FAILURE whose body never started towards the job's failing streak.

    It is a FAILURE like any other, and may open the job's alert.
    """
    after_run(
        database,
        settings,
        job_name=job_name,
        status=RunStatus.FAILURE,
        alert_open=False,  # read only on SUCCESS
        worker_id=worker_id,
    )


def _count_claim(job_name: str, claimed: ClaimResult) -> None:
    if claimed is None:
        metrics.SKIPPED.labels(job_name=job_name, reason="locked").inc()
    elif isinstance(claimed, Wait):
        metrics.SKIPPED.labels(job_name=job_name, reason="upstream").inc()
    elif isinstance(claimed, Skip):
        metrics.SKIPPED.labels(job_name=job_name, reason=claimed.kind).inc()
        if claimed.recorded:
            metrics.RUNS.labels(job_name=job_name, outcome="skipped").inc()
    elif isinstance(claimed, PreCheckFailed):
        count_outcome(job_name, RunStatus.FAILURE, 0.0)
