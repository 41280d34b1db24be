"""The tick loop: work out what is due, attempt it in registration order, sleep.

No SQL here: claims and outcomes go through `runner`, `lock` and `outcomes`. Time
comes in as a parameter (`tick(now)`), so tests drive the loop by hand.

Every instant gets an outcome. Each job keeps a cursor, started from the latest
instant its history holds, so a worker that starts after an outage catches up:
the most recent missed instant runs once, late, if it is within the job's misfire
grace; older ones are recorded MISSED. A (job, instant) that cannot be settled
yet (another worker holds the lock, an upstream has not finished) stays *pending*
on a short poll until it settles or the job's next instant makes it MISSED.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.core.claims import ClaimRequest, ClaimUnacknowledged, Skip
from app.errors import DatabaseError
from app.ops import metrics
from app.ops.health import Liveness
from app.ops.systemd import Notifier
from app.registry import ConfiguredJob
from app.runtime.execution import RunOutcome
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat
from app.runtime.runner import (
    NEXT_INSTANT_CAME,
    AttemptResult,
    attempt_next,
    claim_request,
)
from app.runtime.unanswered import UnansweredClaims
from app.store.claiming import ensure_jobs
from app.store.database import Database
from app.store.history import streaks
from app.store.models import RunStatus, Trigger
from app.store.runs import (
    Missed,
    database_now,
    drop_retries,
    last_scheduled_instants,
    pending_retries,
    record_missed,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
POLL_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
MAX_BACKOFF_S = 30.0
# The loop wakes at least this often, without touching the database, to show it
# is alive (/healthz, the systemd watchdog).
LIVENESS_INTERVAL_S = 5.0
ON_TIME_SLACK_S = 1.0
MAX_MISSED_SCAN = 1000
# How many pending instants one claim looks through: more than the replicas that
# usually race for the same tick, few enough that the lookup stays a few probes.
CLAIM_WINDOW = 8
EXPIRED_REASON = "missed: not settled before the job's next instant"
SKEW_CHECK_EVERY = timedelta(hours=1)


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
    retry: bool = False


def _without(items: Sequence[Due], removed: Sequence[Due]) -> list[Due]:
    """`items` without the very objects in `removed` (compared by identity)."""
    if not removed:
        return list(items)
    return [item for item in items if not any(item is gone for gone in removed)]


@dataclass
class TickReport:
    """What this worker did: outcomes of the runs it claimed, skips, misses."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    skipped: int = 0
    expired: int = 0
    missed: int = 0

    @property
    def failed(self) -> int:
        """How many runs this worker claimed ended FAILURE."""
        return sum(o.status == RunStatus.FAILURE for o in self.outcomes)

    def add(self, other: TickReport) -> None:
        """Fold another report into this one."""
        self.outcomes += other.outcomes
        self.skipped += other.skipped
        self.expired += other.expired
        self.missed += other.missed


def instants_between(job: ConfiguredJob, after: datetime, now: datetime) -> list[datetime]:
    """The job's instants in (after, now], oldest first; at most the latest MAX_MISSED_SCAN."""
    latest = job.schedule.latest_at_or_before(now)
    if latest <= after:
        return []
    if job.schedule.next_after(after) >= latest:
        return [latest]  # the usual tick: one instant, no gap
    found: list[datetime] = []
    moment = now
    while len(found) < MAX_MISSED_SCAN:
        instant = job.schedule.latest_at_or_before(moment)
        if instant <= after:
            break
        found.append(instant)
        moment = instant - timedelta(microseconds=1)
    return found[::-1]


def misfire_grace_s(job: ConfiguredJob, instant: datetime, following: datetime) -> float:
    """How late `instant` may still run: the job's option, or one period (to `following`)."""
    if job.job.misfire_grace_s is not None:
        return job.job.misfire_grace_s
    return (following - instant).total_seconds()


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
        notifier: Notifier | None = None,
    ) -> None:
        self.database = database
        self.notifier = notifier or Notifier(None)
        self.liveness = Liveness()
        self.jobs = list(jobs)
        self.enabled = [j for j in self.jobs if j.enabled]
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.alarm = Alarm()
        self.heartbeat = Heartbeat(
            database,
            interval_s=settings.heartbeat_interval_s,
            stale_after_s=settings.stale_threshold_s,
            on_alive=self.alive,
            alive_every_s=LIVENESS_INTERVAL_S,
        )
        self.forced_stop = False
        self.pending: list[Due] = []
        self.cursors: dict[str, datetime] = {}
        self._by_name = {j.name: j for j in self.jobs}
        self._order = {j.name: i for i, j in enumerate(self.jobs)}
        self._uses_retries = any(j.job.retries for j in self.enabled)
        self._next_retry_at: datetime | None = None
        self._retry_scan_at = datetime.min.replace(tzinfo=UTC)  # scan at the first tick
        self._poll = 0
        self._outage_backoff_s = 0.0
        self._skew_checked_at: datetime | None = None
        self._without_history: set[str] = set()
        self._unanswered = UnansweredClaims[Due](
            database,
            settings,
            clock=clock,
            stop_event=self.stop_event,
            alarm=self.alarm,
            heartbeat=self.heartbeat,
        )

    # -- scheduling (pure) ---------------------------------------------------

    def due(self, *, after: datetime | None, now: datetime) -> list[Due]:
        """The latest instant in (after, now] of each enabled job, in registration order."""
        found = []
        for configured in self.enabled:
            instant = configured.schedule.latest_at_or_before(now)
            if after is None or instant > after:
                found.append(Due(configured, instant, configured.schedule.next_after(instant)))
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
        self.alarm.interrupt_now("interrupted by a second stop signal")
        raise KeyboardInterrupt

    # -- the loop ------------------------------------------------------------

    def start(self, *, now: datetime | None = None) -> None:
        """Create the lock rows, start each job's cursor from its history, say what runs when."""
        ensure_jobs(self.database, [j.name for j in self.jobs])
        now = now or self.clock()
        history = last_scheduled_instants(self.database, [j.name for j in self.enabled])
        for configured in self.jobs:
            if not configured.enabled:
                logger.info(
                    "job %s is disabled by its _ENABLED flag",
                    configured.name,
                    extra={"event": "job_disabled", "job": configured.name},
                )
                continue
            if configured.name not in history:
                self._without_history.add(configured.name)
            self.cursors[configured.name] = history.get(configured.name, now)
            logger.info(
                "job %s: schedule %r, next at %s",
                configured.name,
                configured.schedule.expression,
                configured.schedule.next_after(now).isoformat(),
                extra={"event": "job_scheduled", "job": configured.name},
            )
        self.check_clock_skew(now)
        self._publish_job_metrics(now)

    def _publish_job_metrics(self, now: datetime) -> None:
        """Identity, periods, and each job's streak from the table (for dead-man alerts)."""
        metrics.describe_worker(self.worker_id)
        for configured in self.enabled:
            following = configured.schedule.next_after(now)
            period_s = (configured.schedule.next_after(following) - following).total_seconds()
            metrics.PERIOD.labels(job_name=configured.name).set(period_s)
        for name, streak in streaks(self.database, [j.name for j in self.enabled]).items():
            # A job that never succeeded counts from its registration, so the
            # dead-man alarm also fires for a job that has never run.
            since = streak.last_success_at or streak.registered_at
            if since is not None:
                metrics.LAST_SUCCESS.labels(job_name=name).set(since.timestamp())
            metrics.CONSECUTIVE_FAILURES.labels(job_name=name).set(streak.failures)
            if streak.last_failure_at is not None:
                # The failing alert compares it with the last success: without it a
                # restart would clear an open page until the next failure.
                metrics.LAST_FAILURE.labels(job_name=name).set(streak.last_failure_at.timestamp())

    def check_clock_skew(self, now: datetime) -> None:
        """Warn when this worker's clock and the database's disagree by more than allowed."""
        if self._skew_checked_at is not None and now - self._skew_checked_at < SKEW_CHECK_EVERY:
            return
        self._skew_checked_at = now
        before = self.clock()
        database_clock = database_now(self.database)
        after = self.clock()
        skew_s = (before + (after - before) / 2 - database_clock).total_seconds()
        if abs(skew_s) > self.settings.max_clock_skew_s:
            logger.warning(
                "this worker's clock is %+.1fs off the database's (MAX_CLOCK_SKEW_SECONDS=%g): "
                "schedules follow this clock, leases the database's; fix NTP",
                skew_s,
                self.settings.max_clock_skew_s,
                extra={"event": "clock_skew", "skew_s": skew_s},
            )

    def tick(self, now: datetime) -> TickReport:
        """Queue what is due up to `now` (recording what was missed) and attempt it."""
        report = TickReport()
        queued = {(d.job.name, d.scheduled_for) for d in self.pending}
        something_due = False
        missed: list[Missed] = []
        for configured in self.enabled:
            after = self.cursors.get(configured.name, now)
            instants = instants_between(configured, after, now)
            if not instants:
                continue
            if len(instants) == MAX_MISSED_SCAN:
                self._log_unscanned(configured, after, instants[0])
            something_due = True
            latest, older = instants[-1], instants[:-1]
            expires_at = configured.schedule.next_after(latest)
            lateness_s = (now - latest).total_seconds()
            grace_s = misfire_grace_s(configured, latest, expires_at)
            if lateness_s > max(grace_s, ON_TIME_SLACK_S):
                older = instants
                reason = f"missed: {lateness_s:.0f}s late, beyond the misfire grace of {grace_s:g}s"
            else:
                reason = f"missed: no worker ran it; caught up at {latest.isoformat()} instead"
                if (configured.name, latest) not in queued:
                    self.pending.append(Due(configured, latest, expires_at))
            missed += [Missed(configured.name, instant, reason) for instant in older]
        # One statement for every job's missed instants (a worker that fell behind has
        # one per job). The cursors move once they are recorded: if the write fails,
        # the next tick sees them again.
        report.missed += self._record_missed(missed)
        for configured in self.enabled:
            self.cursors[configured.name] = now
        # Retries come from failures, which happen at instants: scan when something is
        # due or a known retry is, and otherwise once per stale threshold, to take over
        # runs whose worker died. A worker whose jobs have no retries never scans.
        retry_passed = self._next_retry_at is not None and now >= self._next_retry_at
        if something_due or retry_passed or now >= self._retry_scan_at:
            self._queue_retries(queued)
            self._retry_scan_at = now + timedelta(seconds=self.settings.stale_threshold_s)
        self.pending.sort(key=lambda d: (d.scheduled_for, self._order[d.job.name]))
        report.add(self.attempt_pending())
        return report

    def _log_unscanned(self, configured: ConfiguredJob, after: datetime, oldest: datetime) -> None:
        """A gap longer than MAX_MISSED_SCAN instants: say what is neither run nor recorded."""
        first = configured.schedule.next_after(after)
        if first < oldest:
            logger.warning(
                "%s has more than %d missed instants; those from %s to before %s are not recorded",
                configured.name,
                MAX_MISSED_SCAN,
                first.isoformat(),
                oldest.isoformat(),
                extra={
                    "event": "instants_not_recorded",
                    "job": configured.name,
                    "from": first.isoformat(),
                    "until": oldest.isoformat(),
                },
            )

    def _record_missed(self, missed: list[Missed]) -> int:
        """Record MISSED runs in one statement; count and log them per job."""
        if not missed:
            return 0
        recorded = record_missed(self.database, missed)
        instants: dict[str, list[datetime]] = {}
        for m in missed:
            instants.setdefault(m.job_name, []).append(m.scheduled_for)
        for job_name, count in recorded.items():
            metrics.RUNS.labels(job_name=job_name, outcome="missed").inc(count)
            logger.warning(
                "recorded %d missed instants of %s (%s .. %s)",
                count,
                job_name,
                min(instants[job_name]).isoformat(),
                max(instants[job_name]).isoformat(),
                extra={"event": "instants_missed", "job": job_name, "count": count},
            )
        return sum(recorded.values())

    def _queue_retries(self, queued: set[tuple[str, datetime]]) -> None:
        """Queue failed runs due for a retry, read from the table so any replica runs them."""
        if not self._uses_retries:
            return
        self._next_retry_at = None
        for row in pending_retries(self.database, stale_after_s=self.settings.stale_threshold_s):
            configured = self._by_name.get(row.job_name)
            if configured is None or not configured.enabled or not configured.job.retries:
                continue
            if not row.due:
                # On this worker's clock: a retry_at read as a time would look due
                # early to a worker whose clock runs ahead, and it would scan in a loop.
                self._note_retry(self.clock() + timedelta(seconds=float(row.wait_s)))
            elif (row.job_name, row.scheduled_for) not in queued:
                expires_at = configured.schedule.next_after(row.scheduled_for)
                self.pending.append(Due(configured, row.scheduled_for, expires_at, retry=True))

    def _note_retry(self, retry_at: datetime) -> None:
        self._next_retry_at = min(self._next_retry_at or retry_at, retry_at)

    def attempt_pending(self) -> TickReport:
        """Attempt every pending (job, instant) once, in order; keep those not yet settled.

        Each claim is offered the next CLAIM_WINDOW pending instants and takes the
        first that no other replica has settled or holds, so replicas spread over
        a tick instead of queueing behind each other's locks. Claims whose COMMIT
        went unanswered are settled first, and at once when it happens.
        """
        report = TickReport()
        resumed = self._resume_unanswered(report)
        still_pending: list[Due] = []
        queue = deque(_without(self.pending, resumed))
        requests: dict[tuple[str, datetime], ClaimRequest] = {}
        unanswered_before = backing_off = False
        while queue:
            if self.stop_event.is_set():
                still_pending += queue
                break
            window = self._claim_window(queue, report)
            if not window:
                break
            candidates = [(item.job.job, self._request(item, requests)) for item in window]
            try:
                attempt = attempt_next(
                    self.database,
                    candidates,
                    settings=self.settings,
                    alarm=self.alarm,
                    heartbeat=self.heartbeat,
                )
            except ClaimUnacknowledged as exc:
                key = (exc.claim.job_name, exc.claim.scheduled_for)
                claimed = next(w for w in window if (w.job.name, w.scheduled_for) == key)
                self._unanswered.add(claimed, claimed.job.job, exc)
                if unanswered_before:
                    # Twice in one pass: settle it on the next, after the longest poll.
                    still_pending += window + list(queue)
                    backing_off = True
                    break
                unanswered_before = True
                # At once: `worker --once` has no later pass. Raises while unreachable.
                resumed = self._resume_unanswered(report)
                queue.extendleft(reversed(_without(window, resumed)))
                continue
            found = attempt.claim
            report.skipped += len(found.settled)
            still_pending += [window[i] for i in found.held]
            if found.position is None:
                continue
            later = range(found.position + 1, len(window))
            queue.extendleft(window[i] for i in reversed(later) if i not in found.settled)
            self._count_attempt(window[found.position], attempt.result, report, still_pending)
        progressed = len(still_pending) < len(self.pending) and not backing_off
        longest = len(POLL_DELAYS_S) - 1
        self._poll = 0 if progressed else longest if backing_off else min(self._poll + 1, longest)
        self.pending = still_pending
        return report

    def _resume_unanswered(self, report: TickReport, *, stopping: bool = False) -> list[Due]:
        """Settle the claims whose COMMIT went unanswered (see UnansweredClaims); count them.

        Returns the items settled; the others are claimed afresh.
        """
        settled = self._unanswered.settle(stopping=stopping)
        for each in settled:
            if each.given_up == NEXT_INSTANT_CAME:
                report.expired += 1
            if each.outcome.status == RunStatus.MISSED:
                report.missed += 1
            else:
                self._count_attempt(each.item, each.outcome, report, [])
        return [each.item for each in settled]

    def _claim_window(self, queue: deque[Due], report: TickReport) -> list[Due]:
        """Take up to CLAIM_WINDOW items off the queue, recording the expired ones MISSED."""
        window: list[Due] = []
        expired: list[Missed] = []
        expired_retries: list[Due] = []
        while queue and len(window) < CLAIM_WINDOW:
            item = queue.popleft()
            if self.clock() < item.expires_at:
                window.append(item)
                continue
            report.expired += 1
            if item.retry:
                expired_retries.append(item)
            else:
                expired.append(Missed(item.job.name, item.scheduled_for, EXPIRED_REASON))
        # One statement for all of them: a worker that fell behind catches up instead
        # of spending a transaction on each instant it lost.
        report.missed += self._record_missed(expired)
        self._drop_retries(expired_retries)
        return window

    def _drop_retries(self, expired: list[Due]) -> None:
        """Give up retries whose job's next instant came first (their run stays FAILURE)."""
        if not expired:
            return
        keys = [(item.job.name, item.scheduled_for) for item in expired]
        for job_name, scheduled_for in drop_retries(self.database, keys):
            logger.warning(
                "gave up the retry of %s for %s: the job's next instant came first",
                job_name,
                scheduled_for.isoformat(),
                extra={
                    "event": "retry_expired",
                    "job": job_name,
                    "scheduled_for": scheduled_for.isoformat(),
                },
            )

    def _request(self, item: Due, made: dict[tuple[str, datetime], ClaimRequest]) -> ClaimRequest:
        """The claim request of a pending item, made once per pass."""
        key = (item.job.name, item.scheduled_for)
        if key not in made:
            made[key] = claim_request(
                item.job.job,
                scheduled_for=item.scheduled_for,
                trigger=Trigger.SCHEDULE,
                settings=self.settings,
                worker_id=self.worker_id,
                expires_at=item.expires_at,
                run_after=self.upstreams(item),
            )
        return made[key]

    def _count_attempt(
        self, item: Due, result: AttemptResult, report: TickReport, still_pending: list[Due]
    ) -> None:
        if isinstance(result, RunOutcome):
            report.outcomes.append(result)
            if result.retry_in_s is not None:
                self._note_retry(self.clock() + timedelta(seconds=result.retry_in_s))
        elif isinstance(result, Skip):
            report.skipped += 1
        else:
            still_pending.append(item)

    def _wake_at(self, now: datetime) -> datetime:
        candidates = [t for t in (self.next_tick(now), self._next_retry_at) if t is not None]
        candidates.append(now + timedelta(seconds=LIVENESS_INTERVAL_S))
        if self.pending:
            candidates.append(now + timedelta(seconds=POLL_DELAYS_S[self._poll]))
        return min(candidates)

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
            delay_s = (self._wake_at(self.clock()) - self.clock()).total_seconds()
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
            self.check_clock_skew(now)
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
        """Settle each enabled job's latest instant, then return (for timers and CronJobs).

        A job with no scheduled run yet has its latest instant run; otherwise the
        same catch-up rules as the long-running worker apply.
        """
        now = self.clock()
        self.start(now=now)
        for configured in self.enabled:
            if configured.name in self._without_history:
                latest = configured.schedule.latest_at_or_before(now)
                self.cursors[configured.name] = latest - timedelta(microseconds=1)
        total = TickReport()
        try:
            total.add(self.tick(now))
            total.add(self.settle_pending())
        finally:
            self._close(total)
        return total

    def settle_pending(self) -> TickReport:
        """Retry the instants another replica held, on the poll delays, until none is left."""
        total = TickReport()
        while self.pending and not self.stop_event.is_set():
            self.stop_event.wait(POLL_DELAYS_S[self._poll])
            total.add(self.attempt_pending())
        return total
