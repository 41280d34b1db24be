"""The tick loop: work out what is due, attempt it in registration order, sleep.

No SQL here: claims and outcomes go through `runner` and `lock`. Time comes in as
a parameter (`tick(now)`), so tests drive the loop without patching a clock.

A (job, instant) that cannot be settled yet (another worker holds the lock, or an
upstream job has not finished that instant) stays *pending* and is attempted again
on a short poll until it settles or the job's next instant makes it obsolete. The
worker keeps ticking other jobs meanwhile.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.config import Settings
from app.db import Database
from app.errors import DatabaseError
from app.lock import Skip, ensure_jobs
from app.models import RunStatus, Trigger
from app.registry import ConfiguredJob
from app.runner import RunOutcome, attempt_run

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
POLL_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
MAX_BACKOFF_S = 30.0


def utc_now() -> datetime:
    """The worker clock, used for schedules only (leases use the database clock)."""
    return datetime.now(UTC)


def default_worker_id() -> str:
    """host:pid, recorded on every run this process claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Due:
    """One (job, instant) to settle, obsolete once `expires_at` has passed."""

    job: ConfiguredJob
    scheduled_for: datetime
    expires_at: datetime


@dataclass
class TickReport:
    """What this worker did: outcomes of the runs it claimed, and skips."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    skipped: int = 0
    expired: int = 0

    @property
    def failed(self) -> int:
        """How many runs this worker claimed ended FAILURE."""
        return sum(o.status == RunStatus.FAILURE for o in self.outcomes)

    def add(self, other: TickReport) -> None:
        """Fold another report into this one."""
        self.outcomes += other.outcomes
        self.skipped += other.skipped
        self.expired += other.expired


class Worker:
    """Runs the enabled jobs on their schedules, one after another, until stopped."""

    def __init__(
        self,
        database: Database,
        jobs: Sequence[ConfiguredJob],
        settings: Settings,
        *,
        worker_id: str | None = None,
        clock: Clock = utc_now,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.database = database
        self.jobs = list(jobs)
        self.enabled = [j for j in self.jobs if j.enabled]
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.pending: list[Due] = []
        self._by_name = {j.name: j for j in self.jobs}
        self._poll = 0
        self._outage_backoff_s = 0.0

    # -- scheduling (pure) ---------------------------------------------------

    def due(self, *, after: datetime | None, now: datetime) -> list[Due]:
        """The latest instant in (after, now] of each enabled job, in registration order."""
        found = []
        for configured in self.enabled:
            instant = configured.schedule.latest_at_or_before(now)
            if after is None or instant > after:
                expires_at = configured.schedule.next_after(instant)
                found.append(Due(configured, instant, expires_at))
        return found

    def next_tick(self, after: datetime) -> datetime | None:
        """The earliest instant of any enabled job strictly after `after`."""
        instants = [j.schedule.next_after(after) for j in self.enabled]
        return min(instants) if instants else None

    def upstreams(self, due: Due) -> list[str]:
        """The run_after jobs that take part in this instant: enabled and due at it too."""
        names = []
        for name in due.job.job.run_after:
            upstream = self._by_name[name]
            fires = upstream.schedule.latest_at_or_before(due.scheduled_for) == due.scheduled_for
            if upstream.enabled and fires:
                names.append(name)
        return names

    # -- the loop ------------------------------------------------------------

    def start(self) -> None:
        """Create the jobs' lock rows and say what will run when."""
        ensure_jobs(self.database, [j.name for j in self.jobs])
        now = self.clock()
        for configured in self.jobs:
            if configured.enabled:
                logger.info(
                    "job %s: schedule %r, next at %s",
                    configured.name,
                    configured.schedule.expression,
                    configured.schedule.next_after(now).isoformat(),
                    extra={"event": "job_scheduled", "job": configured.name},
                )
            else:
                logger.info(
                    "job %s is disabled by its _ENABLED flag",
                    configured.name,
                    extra={"event": "job_disabled", "job": configured.name},
                )

    def tick(self, now: datetime, *, after: datetime | None) -> TickReport:
        """Add the instants due in (after, now] to the pending ones and attempt each once."""
        queued = {(d.job.name, d.scheduled_for) for d in self.pending}
        self.pending += [
            d for d in self.due(after=after, now=now) if (d.job.name, d.scheduled_for) not in queued
        ]
        order = {j.name: i for i, j in enumerate(self.jobs)}
        self.pending.sort(key=lambda d: (d.scheduled_for, order[d.job.name]))
        return self.attempt_pending()

    def attempt_pending(self) -> TickReport:
        """Attempt every pending (job, instant) once, in order; keep those not yet settled."""
        report, still_pending = TickReport(), []
        for item in self.pending:
            if self.stop_event.is_set():
                still_pending.append(item)
                continue
            if self.clock() >= item.expires_at:
                report.expired += 1
                logger.warning(
                    "gave up on %s for %s: its next instant has come",
                    item.job.name,
                    item.scheduled_for.isoformat(),
                    extra={"event": "run_expired", "job": item.job.name},
                )
                continue
            result = attempt_run(
                self.database,
                item.job.job,
                scheduled_for=item.scheduled_for,
                trigger=Trigger.SCHEDULE,
                settings=self.settings,
                worker_id=self.worker_id,
                run_after=self.upstreams(item),
            )
            if isinstance(result, RunOutcome):
                report.outcomes.append(result)
            elif isinstance(result, Skip):
                report.skipped += 1
            else:
                still_pending.append(item)
        progressed = len(still_pending) < len(self.pending)
        self._poll = 0 if progressed else min(self._poll + 1, len(POLL_DELAYS_S) - 1)
        self.pending = still_pending
        return report

    def run_forever(self) -> TickReport:
        """Tick at every instant until the stop event is set; return the totals."""
        self.start()
        total = TickReport()
        cursor = self.clock()
        while not self.stop_event.is_set():
            wake_at = self.next_tick(cursor)
            if self.pending:
                poll = self.clock().timestamp() + POLL_DELAYS_S[self._poll]
                wake_at = min(wake_at, datetime.fromtimestamp(poll, UTC)) if wake_at else None
            if wake_at is None:
                logger.warning(
                    "no job is enabled; waiting for a stop signal",
                    extra={"event": "no_jobs_enabled"},
                )
                self.stop_event.wait()
                break
            delay_s = (wake_at - self.clock()).total_seconds()
            if delay_s > 0 and self.stop_event.wait(delay_s):
                break
            now = self.clock()
            if self._tick_survives(now, after=cursor, total=total):
                cursor = max(cursor, now)
        logger.info("worker %s stopped", self.worker_id, extra={"event": "worker_stopped"})
        return total

    def _tick_survives(self, now: datetime, *, after: datetime, total: TickReport) -> bool:
        """Tick; on a database error log once, back off, and report False to retry."""
        try:
            total.add(self.tick(now, after=after))
        except DatabaseError as exc:
            if self._outage_backoff_s == 0:
                logger.error(
                    "database error, retrying with backoff: %s",
                    exc.message,
                    extra={"event": "database_unavailable"},
                )
            self._outage_backoff_s = min(max(self._outage_backoff_s * 2, 0.5), MAX_BACKOFF_S)
            self.stop_event.wait(self._outage_backoff_s)
            return False
        if self._outage_backoff_s:
            logger.info("database reachable again", extra={"event": "database_recovered"})
            self._outage_backoff_s = 0
        return True

    def run_once(self) -> TickReport:
        """Settle each enabled job's latest instant, then return (for timers and CronJobs)."""
        self.start()
        total = self.tick(self.clock(), after=None)
        while self.pending and not self.stop_event.is_set():
            self.stop_event.wait(POLL_DELAYS_S[self._poll])
            total.add(self.attempt_pending())
        return total
