"""What a claim asks and what it answers, and the built-in pre-check's verdict.

The verdict (`decide`) is a pure function of the job's runs that matter, read
under the job's lock by `app.store.claiming`; no SQL here, so the rules read on their own:
one live run per job, one outcome per instant, plus the retries a job allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.core.outcomes import RunStatus, Trigger
from app.errors import DatabaseError


@dataclass(frozen=True)
class Claim:
    """A run this worker owns: its id is the fencing token for every later write."""

    run_id: int
    job_name: str
    scheduled_for: datetime
    trigger: str
    attempt: int
    worker_id: str
    started_at: datetime
    alert_open: bool = False
    params: Mapping[str, Any] | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Skip:
    """The instant needs no run from this worker. `recorded`: a SKIPPED row says why.

    `kind` sorts reasons for metrics: handled (the instant has a run already),
    running (a previous run is still going), pre_check, upstream, paused.
    """

    reason: str
    recorded: bool = False
    kind: str = "handled"


@dataclass(frozen=True)
class Wait:
    """Not yet: an upstream job has not finished this instant. Try again later."""

    reason: str


@dataclass(frozen=True)
class PreCheckFailed:
    """The job's pre-check raised: the run was recorded FAILURE without starting."""

    run_id: int
    error: str


ClaimResult = Claim | Skip | Wait | PreCheckFailed | None
"""None means another worker holds the job's lock row right now."""

PreCheckFn = Callable[[Session], str | None]


@dataclass(frozen=True, kw_only=True)
class ClaimRequest:
    """What to claim, and the job's rules that the claim applies."""

    job_name: str
    scheduled_for: datetime
    trigger: str
    worker_id: str
    stale_after_s: float
    expires_at: datetime | None = None
    retries: int = 0
    run_after: Sequence[str] = ()
    pre_check: PreCheckFn | None = None
    wait_for_lock: bool = False
    ignore_pause: bool = False
    retry_run_id: int | None = None
    redact: Callable[[str], str] = str
    # A manual run's validated parameters (JSON), dry run, and who asked for it.
    params: Mapping[str, Any] | None = None
    dry_run: bool = False
    requested_by: str | None = None


class ClaimUnacknowledged(DatabaseError):  # noqa: N818 - reads as the condition it reports
    """The claim's COMMIT was sent but its answer never came: the run may exist, RUNNING.

    Its body has not run. The worker that made it resumes it once the database
    answers again (`app.runtime.unanswered.resume_claim`); anyone else sees a live run until its
    heartbeat is STALE_JOB_THRESHOLD_SECONDS old.
    """

    def __init__(self, request: ClaimRequest, claim: Claim, cause: DatabaseError) -> None:
        super().__init__(
            f"{cause.message}; the claim of {claim.job_name} for "
            f"{claim.scheduled_for.isoformat()} (run {claim.run_id}) may have committed: "
            "if it did and nothing settles it once the database answers, it ends as "
            "abandoned when its heartbeat is stale"
        )
        self.request = request
        self.claim = claim


@dataclass(frozen=True)
class NextClaim:
    """What one `claim_next` found, by position in the requests it was given.

    `settled`: instants that need nothing from this worker (an outcome, or a live
    run). `held`: those stepped over because another worker holds their job's row.
    `position`: the request whose job this worker locked, and `result` its claim;
    None when another worker held every job left to claim. `running_elsewhere`:
    one of the settled instants has a live run (worth watching for staleness).
    """

    settled: Mapping[int, Skip]
    held: Sequence[int] = ()
    position: int | None = None
    result: ClaimResult = None
    running_elsewhere: bool = False


def pause_reason(job_paused: str | None, all_paused: str | None) -> str | None:
    """The SKIPPED reason a pause gives, the job's own first; None when not paused."""
    if job_paused is not None:
        return f"paused: {job_paused}"
    if all_paused is not None:
        return f"paused (all jobs): {all_paused}"
    return None


def decide(runs: Sequence[Any], request: ClaimRequest) -> Skip | tuple[int, int | None]:
    """The built-in pre-check: one live run per job, one outcome per instant (plus retries).

    Returns the Skip, or the attempt to run and the failed run it retries.
    """
    instant = request.scheduled_for
    live = [r for r in runs if r.status == RunStatus.RUNNING]
    mine = sorted((r for r in runs if r.scheduled_for == instant), key=lambda r: r.attempt)
    if any(r.scheduled_for == instant for r in live):
        run = next(r for r in live if r.scheduled_for == instant)
        return Skip(settled_reason(run.status, run.id, run.worker_id))
    if mine:
        latest = mine[-1]
        retry_due = latest.retry_due or latest.id == request.retry_run_id
        if not (latest.status == RunStatus.FAILURE and retry_due):
            return Skip(settled_reason(latest.status, latest.id, latest.worker_id))
        if live:
            return Skip(f"retry waits: run {live[0].id} is still running", kind="running")
        return latest.attempt + 1, latest.id
    if live:
        previous = live[0]
        return Skip(
            f"previous run {previous.id} (for {previous.scheduled_for.isoformat()}) "
            f"is still running on {previous.worker_id}",
            recorded=request.trigger == Trigger.SCHEDULE,
            kind="running",
        )
    return 1, None


def settled_reason(status: str, run_id: int, worker_id: str) -> str:
    """Why an instant that has a run needs nothing more."""
    if status == RunStatus.RUNNING:
        return f"already running as run {run_id} on {worker_id}"
    return f"this instant already has run {run_id} ({status})"
