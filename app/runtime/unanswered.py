"""The claims a worker made whose COMMIT went unanswered, until the table settles them.

Until one is settled, its run, if the claim committed, looks live to every
claim of its instant, the worker's own too: so a worker settles them before it
claims anything else (`app.runtime.runner.resume_claim` asks the table).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from app.config import Settings
from app.core.claims import Claim, ClaimUnacknowledged
from app.core.job import Job
from app.runtime.execution import RunOutcome
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat
from app.runtime.runner import NEXT_INSTANT_CAME, WORKER_STOPPING, resume_claim, run_claim
from app.store.database import Database

Item = TypeVar("Item")


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
        database: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        stop_event: threading.Event,
        alarm: Alarm,
        heartbeat: Heartbeat,
    ) -> None:
        self._database = database
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
            found = resume_claim(self._database, job, unanswered, self._settings, give_up=give_up)
            if isinstance(found, Claim) and self._stop_event.is_set():
                # Stopped while the renewal waited: end the run rather than start it.
                give_up = WORKER_STOPPING
                found = resume_claim(
                    self._database, job, unanswered, self._settings, give_up=give_up
                )
            # Forgotten before the body runs: whatever happens next, never run it twice.
            self._claims.pop(0)
            if found is None:
                continue
            if isinstance(found, Claim):
                found = run_claim(
                    self._database,
                    job,
                    unanswered.request,
                    found,
                    self._settings,
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
