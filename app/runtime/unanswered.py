"""The claims a worker made whose COMMIT went unanswered, until the table settles them.

Until one is settled, its run, if the claim committed, looks live to every
claim of its instant, the worker's own too: so a worker settles them before it
claims anything else (`resume_claim` asks the table).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from app.config import Settings
from app.core.claims import Claim, ClaimUnacknowledged
from app.core.job import Job
from app.core.outcomes import Outcome, RunOutcome, RunStatus
from app.ops import metrics
from app.ops.logs import job_scope
from app.ops.observe import observe_unstarted_failure
from app.runtime.execution import execute
from app.runtime.interrupts import Alarm
from app.runtime.lease import MAX_RENEWAL_WAIT_S, Heartbeat
from app.store.facade import Store

logger = logging.getLogger(__name__)

# Why a claim whose COMMIT went unanswered is given up instead of run (`resume_claim`).
NEXT_INSTANT_CAME = "the job's next instant came before the database answered again"
WORKER_STOPPING = "the worker was stopping"

Item = TypeVar("Item")


def resume_claim(
    store: Store,
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
            if not store.finish(claim.run_id, ending).landed and not store.finish_held(
                claim.run_id, [ending]
            ):
                return None
            if ending.status == RunStatus.FAILURE:
                observe_unstarted_failure(store, settings, job.name, claim.worker_id)
            else:
                metrics.outcomes_recorded(job.name, "missed")
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
        if not store.renew(claim.run_id, timeout_s=wait_s):
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


@dataclass(frozen=True)
class Settled(Generic[Item]):
    """An unanswered claim's item, how its run ended, and why it was given up (or None)."""

    item: Item
    outcome: RunOutcome
    given_up: str | None


class UnansweredClaims(Generic[Item]):
    """Oldest first; each with the item the worker claimed it for, and its job."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        stop_event: threading.Event,
        alarm: Alarm,
        heartbeat: Heartbeat,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._stop_event = stop_event
        self._alarm = alarm
        self._heartbeat = heartbeat
        self._claims: list[tuple[Item, Job, ClaimUnacknowledged]] = []

    def __len__(self) -> int:
        return len(self._claims)

    def add(self, item: Item, job: Job, unanswered: ClaimUnacknowledged) -> None:
        """Remember a claim whose COMMIT went unanswered."""
        self._claims.append((item, job, unanswered))

    def settle(self, *, stopping: bool = False) -> list[Settled[Item]]:
        """Settle each, oldest first: run it, give it up, or find there is no such run.

        A run is given up, not started, once the job's next instant has come or the
        worker is stopping. Returns the items whose run there was; the others are
        the worker's to claim afresh. Raises DatabaseError, keeping the rest, while
        the database does not answer.
        """
        settled: list[Settled[Item]] = []
        while self._claims:
            item, job, unanswered = self._claims[0]
            give_up = self._give_up(unanswered, stopping=stopping)
            found = resume_claim(self._store, job, unanswered, self._settings, give_up=give_up)
            if isinstance(found, Claim) and self._stop_event.is_set():
                # Stopped while the renewal waited: end the run rather than start it.
                give_up = WORKER_STOPPING
                found = resume_claim(self._store, job, unanswered, self._settings, give_up=give_up)
            # Forgotten before the body runs: whatever happens next, never run it twice.
            self._claims.pop(0)
            if found is None:
                continue
            if isinstance(found, Claim):
                found = execute(
                    self._store,
                    job,
                    found,
                    self._settings,
                    expires_at=unanswered.request.expires_at,
                    alarm=self._alarm,
                    heartbeat=self._heartbeat,
                )
            settled.append(Settled(item, found, give_up))
        return settled

    def _give_up(self, unanswered: ClaimUnacknowledged, *, stopping: bool) -> str | None:
        if stopping or self._stop_event.is_set():
            return WORKER_STOPPING
        expires_at = unanswered.request.expires_at
        if expires_at is not None and self._clock() >= expires_at:
            return NEXT_INSTANT_CAME
        return None
