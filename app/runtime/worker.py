"""The tick loop: plan what is due, claim it in registration order, sleep.

No SQL here (claims and outcomes go through the store) and no instant
arithmetic (`app.core.planning` decides what is due, missed or expired). The
clock is read once per loop iteration and passed down (`tick(now)`), so tests
drive the loop by hand.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.core import planning
from app.core.backoff import Backoff
from app.core.claims import ClaimRequest, ClaimUnacknowledged, Skip
from app.core.job import ConfiguredJob
from app.core.outcomes import RunOutcome, RunStatus, TickReport, Trigger
from app.core.planning import Missed, PendingInstant
from app.errors import DatabaseError, SchemaMissing
from app.ops import metrics
from app.ops.health import Liveness
from app.ops.observe import (
    ClockSkewCheck,
    observe_gaps,
    observe_missed,
    observe_schedules,
    publish_job_metrics,
)
from app.ops.systemd import Notifier
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat
from app.runtime.retries import RetryQueue
from app.runtime.runner import InstantResult, claim_next_and_run, claim_request
from app.runtime.sweep import StaleRunSweep
from app.runtime.unanswered import NEXT_INSTANT_CAME, UnansweredClaims
from app.store.facade import Store

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Polling the instants another replica holds: 50 ms, doubling, at most 1 s apart.
POLL_BACKOFF = Backoff(0.05, cap_s=1.0)
POLL_STEPS = 6  # 0.05 .. 1.0 s: the poll delay after this many passes planning.without progress
# Retrying the tick through a database outage: 0.5 s, doubling, at most 30 s apart.
OUTAGE_BACKOFF = Backoff(0.5, cap_s=30.0)
# The loop wakes at least this often, planning.without touching the database, to show it
# is alive (/healthz, the systemd watchdog).
LIVENESS_INTERVAL_S = 5.0
# How many pending instants one claim looks through: more than the replicas that
# usually race for the same tick, few enough that the lookup stays a few probes.
CLAIM_WINDOW = 8
SECOND_SIGNAL = "interrupted by a second stop signal"


def utc_now() -> datetime:
    """The worker clock, used for schedules only (leases use the database clock)."""
    return datetime.now(UTC)


def default_worker_id() -> str:
    """host:pid, recorded on every run this process claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Runs the enabled jobs on their schedules, one after another, until stopped."""

    def __init__(
        self,
        store: Store,
        jobs: Sequence[ConfiguredJob],
        settings: Settings,
        *,
        worker_id: str | None = None,
        clock: Clock = utc_now,
        stop_event: threading.Event | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier or Notifier(None)
        self.liveness = Liveness()
        self.jobs = list(jobs)
        # Scheduled: enabled, and not manual-only (parameters without defaults).
        self.enabled = [j for j in self.jobs if j.enabled and not j.job.manual_only]
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.alarm = Alarm()
        self.heartbeat = Heartbeat(
            store,
            interval_s=settings.heartbeat_interval_s,
            stale_after_s=settings.stale_threshold_s,
            on_alive=self.alive,
            alive_every_s=LIVENESS_INTERVAL_S,
        )
        self.forced_stop = False
        self.schema_missing = False
        self.pending: list[PendingInstant] = []
        self.cursors: dict[str, datetime] = {}
        self._by_name = {j.name: j for j in self.jobs}
        self._order = {j.name: i for i, j in enumerate(self.jobs)}
        self.retries = RetryQueue(store, self.jobs, stale_after_s=settings.stale_threshold_s)
        self.sweep = StaleRunSweep(
            store,
            self.jobs,
            stale_after_s=settings.stale_threshold_s,
            interval_s=settings.heartbeat_interval_s,
            worker_id=self.worker_id,
        )
        self._polls_without_progress = 0
        self._outages = 0
        self.skew = ClockSkewCheck(store, clock, max_skew_s=settings.max_clock_skew_s)
        self._unanswered = UnansweredClaims[PendingInstant](
            store,
            settings,
            clock=clock,
            stop_event=self.stop_event,
            alarm=self.alarm,
            heartbeat=self.heartbeat,
        )

    # -- stopping ------------------------------------------------------------

    def alive(self) -> None:
        """The loop went round, or during a run the heartbeat thread or a retried write said so."""
        self.liveness.beat()
        metrics.loop_went_round()
        self.notifier.keep_alive()

    def request_stop(self) -> None:
        """Start no new run; give the current one SHUTDOWN_GRACE_SECONDS to finish."""
        self.notifier.stopping()
        self.stop_event.set()
        self.alarm.arm(self.settings.shutdown_grace_s, "interrupted by shutdown")

    def force_stop(self) -> None:
        """Interrupt the current run now (it is recorded FAILURE) and stop."""
        self.forced_stop = True
        self.stop_event.set()
        # A run in progress records this reason, wherever in the run the signal lands.
        self.alarm.stop_now(SECOND_SIGNAL)

    # -- starting ------------------------------------------------------------

    def start(self, *, now: datetime | None = None) -> None:
        """Create the lock rows, start each job's cursor from its history, say what runs when."""
        self.store.ensure_jobs([j.name for j in self.jobs])
        now = now or self.clock()
        history = self.store.last_scheduled_instants([j.name for j in self.enabled])
        observe_schedules(self.jobs, now)
        for item in planning.latest_instants(self.enabled, now):
            # Never past now: a worker whose clock runs behind the database's (or a
            # test's clock) plans from its own now.
            cursor = min(history.get(item.job.name, now), now)
            if item.job.job.run_at_start:
                # The latest instant is due again unless it has an outcome, which the
                # claim reads: one run across replicas that start together.
                cursor = min(cursor, item.scheduled_for - timedelta(microseconds=1))
            self.cursors[item.job.name] = cursor
        self.sweep.expect(now)  # a run left RUNNING by a worker that died before this start
        self.skew.check(now)
        publish_job_metrics(self.store, self.worker_id, self.enabled, now)

    # -- a tick --------------------------------------------------------------

    def tick(self, now: datetime) -> TickReport:
        """Queue what is due up to `now` (recording what was missed) and claim it."""
        report = TickReport()
        if self.sweep.sweep(now):
            self.retries.note(now)  # a closed run whose job has retries left is due again
        plan = planning.plan_tick(self.enabled, self.cursors, self.pending, now)
        observe_gaps(plan.gaps, max_scanned=planning.MAX_MISSED_SCAN)
        self.pending += plan.queue
        # One statement for every job's missed instants (a worker that fell behind has
        # one per job). The cursors move once they are recorded: if the write fails,
        # the next tick sees them again.
        report.missed += self._record_missed(plan.missed + planning.missed_for(plan.expired))
        self.retries.drop(plan.expired)
        report.expired += len(plan.expired)
        self.pending = planning.without(self.pending, plan.expired)
        self.cursors.update(plan.cursors)
        queued = {item.key for item in self.pending}
        self.pending += self.retries.scan(now, something_due=plan.something_due, queued=queued)
        self.pending.sort(key=lambda item: planning.queue_order(item, self._order))
        report.add(self.claim_pending())
        return report

    def _record_missed(self, missed: list[Missed]) -> int:
        """Record MISSED runs in one statement; count and log them per job."""
        return observe_missed(self.store.record_missed(missed), missed) if missed else 0

    # -- claiming the pending instants ---------------------------------------

    def claim_pending(self) -> TickReport:
        """Claim every pending (job, instant) once, in order; keep those not yet settled.

        Each claim is offered the next CLAIM_WINDOW pending instants and takes the
        first that no other replica has settled or holds, so replicas spread over
        a tick instead of queueing behind each other's locks. Claims whose COMMIT
        went unanswered are settled first, and at once when it happens.
        """
        report = TickReport()
        resumed = self._resume_unanswered(report)
        still_pending: list[PendingInstant] = []
        queue = deque(planning.without(self.pending, resumed))
        requests: dict[tuple[str, datetime], ClaimRequest] = {}
        unanswered_before = backing_off = False
        while queue:
            if self.stop_event.is_set():
                still_pending += queue
                break
            now = self.clock()
            window = self._claim_window(queue, report, now)
            if not window:
                break
            candidates = [(item.job.job, self._request(item, requests)) for item in window]
            try:
                found = claim_next_and_run(
                    self.store,
                    candidates,
                    settings=self.settings,
                    alarm=self.alarm,
                    heartbeat=self.heartbeat,
                )
            except ClaimUnacknowledged as exc:
                key = (exc.claim.job_name, exc.claim.scheduled_for)
                claimed = next(item for item in window if item.key == key)
                self._unanswered.add(claimed, claimed.job.job, exc)
                if unanswered_before:
                    # Twice in one pass: settle it on the next, after the longest poll.
                    still_pending += window + list(queue)
                    backing_off = True
                    break
                unanswered_before = True
                # At once: `worker --once` has no later pass. Raises while unreachable.
                resumed = self._resume_unanswered(report)
                queue.extendleft(reversed(planning.without(window, resumed)))
                continue
            claim = found.claim
            if claim.running_elsewhere:
                self.sweep.saw_running(now)
            report.skipped += len(claim.settled)
            still_pending += [window[i] for i in claim.held]
            if claim.position is None:
                continue
            later = range(claim.position + 1, len(window))
            queue.extendleft(window[i] for i in reversed(later) if i not in claim.settled)
            self._count(window[claim.position], found.result, report, still_pending)
        progressed = len(still_pending) < len(self.pending) and not backing_off
        if progressed:
            self._polls_without_progress = 0
        elif backing_off:
            self._polls_without_progress = POLL_STEPS
        else:
            self._polls_without_progress = min(self._polls_without_progress + 1, POLL_STEPS)
        self.pending = still_pending
        return report

    def _resume_unanswered(
        self, report: TickReport, *, stopping: bool = False
    ) -> list[PendingInstant]:
        """Settle the claims whose COMMIT went unanswered (see UnansweredClaims); count them.

        Returns the instants settled; the others are claimed afresh.
        """
        settled = self._unanswered.settle(stopping=stopping)
        for each in settled:
            if each.given_up == NEXT_INSTANT_CAME:
                report.expired += 1
            if each.outcome.status == RunStatus.MISSED:
                report.missed += 1
            else:
                self._count(each.item, each.outcome, report, [])
        return [each.item for each in settled]

    def _claim_window(
        self, queue: deque[PendingInstant], report: TickReport, now: datetime
    ) -> list[PendingInstant]:
        """Take up to CLAIM_WINDOW instants off the queue, recording the expired ones MISSED."""
        window, expired = planning.take_window(queue, now, size=CLAIM_WINDOW)
        report.expired += len(expired)
        # One statement for all of them: a worker that fell behind catches up instead
        # of spending a transaction on each instant it lost.
        report.missed += self._record_missed(planning.missed_for(expired))
        self.retries.drop(expired)
        return window

    def _request(
        self, item: PendingInstant, made: dict[tuple[str, datetime], ClaimRequest]
    ) -> ClaimRequest:
        """The claim request of a pending instant, made once per pass."""
        if item.key not in made:
            made[item.key] = claim_request(
                item.job.job,
                scheduled_for=item.scheduled_for,
                trigger=Trigger.SCHEDULE,
                settings=self.settings,
                worker_id=self.worker_id,
                expires_at=item.expires_at,
                run_after=planning.upstreams_at(item, self._by_name),
            )
        return made[item.key]

    def _count(
        self,
        item: PendingInstant,
        result: InstantResult,
        report: TickReport,
        still_pending: list[PendingInstant],
    ) -> None:
        if isinstance(result, RunOutcome):
            report.outcomes.append(result)
            if result.retry_in_s is not None:
                self.retries.note(self.clock() + timedelta(seconds=result.retry_in_s))
        elif isinstance(result, Skip):
            report.skipped += 1
            if result.kind == "running":
                self.sweep.saw_running(self.clock())
        else:
            still_pending.append(item)

    # -- the loop ------------------------------------------------------------

    def _wake_at(self, now: datetime) -> datetime:
        polls = self._polls_without_progress
        return planning.wake_at(
            now,
            deadlines=(
                planning.next_instant(self.enabled, now),
                self.retries.next_retry_at,
                self.sweep.next_at,
            ),
            poll_s=POLL_BACKOFF.delay_s(polls + 1) if self.pending else None,
            liveness_s=LIVENESS_INTERVAL_S,
        )

    def run_forever(self) -> TickReport:
        """Tick at every instant until the stop event is set; return the totals."""
        self.start()
        self.notifier.ready()
        if not self.enabled:
            logger.warning(
                "no job is enabled; waiting for a stop signal", extra={"event": "no_jobs_enabled"}
            )
        total = TickReport()
        # Tick at once: the latest instant missed while no worker was up runs now.
        self._tick_survives(self.clock(), total=total)
        while not self.stop_event.is_set():
            self.alive()
            now = self.clock()
            delay_s = (self._wake_at(now) - now).total_seconds()
            if delay_s > 0 and self.stop_event.wait(delay_s):
                break
            self._tick_survives(self.clock(), total=total)
        self._close(total)
        logger.info("worker %s stopped", self.worker_id, extra={"event": "worker_stopped"})
        return total

    def _close(self, total: TickReport) -> None:
        """On the way out: end the runs of unanswered claims, if the database answers."""
        if self._unanswered:
            try:
                self._resume_unanswered(total, stopping=True)
            except DatabaseError as exc:
                logger.error(
                    "could not settle %d unanswered claims: %s; their runs, if they exist, "
                    "end abandoned once stale",
                    len(self._unanswered),
                    exc.message,
                    extra={"event": "claims_unsettled"},
                )
        self.heartbeat.close()

    def _tick_survives(self, now: datetime, *, total: TickReport) -> bool:
        """Tick; on a database error log once, back off, and report False to retry."""
        try:
            total.add(self.tick(now))
            self.skew.check(now)
        except SchemaMissing as exc:
            # Retrying would only repeat the error: stop, and say so once.
            logger.critical("%s; this worker stops", exc.message, extra={"event": "schema_missing"})
            self.schema_missing = True
            self.stop_event.set()
            return False
        except DatabaseError as exc:
            if self._outages == 0:
                logger.error(
                    "database error, retrying with backoff: %s",
                    exc.message,
                    extra={"event": "database_unavailable"},
                )
            self._outages += 1
            self.stop_event.wait(OUTAGE_BACKOFF.delay_s(self._outages))
            return False
        if self._outages:
            logger.info("database reachable again", extra={"event": "database_recovered"})
            self._outages = 0
        return True

    def run_once(self) -> TickReport:
        """Settle each enabled job's instants since its cursor, then return (for timers and
        CronJobs): the same catch-up rules as the long-running worker's. A new job's
        cursor starts at its registration, so it first runs at its first instant after
        it was deployed, not at once for an instant long before."""
        now = self.clock()
        self.start(now=now)
        total = TickReport()
        try:
            total.add(self.tick(now))
            total.add(self.settle_pending())
        finally:
            self._close(total)
        return total

    def settle_pending(self) -> TickReport:
        """Claim the instants another replica held, on the poll delays, until none is left."""
        total = TickReport()
        while self.pending and not self.stop_event.is_set():
            self.stop_event.wait(POLL_BACKOFF.delay_s(self._polls_without_progress + 1))
            total.add(self.claim_pending())
        return total
