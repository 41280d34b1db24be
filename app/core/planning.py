"""The tick planner: which instants are due, which were missed, which expired waiting.

Pure: no I/O and no clock reads. The worker reads its clock once per loop
iteration and passes `now` in; everything here is arithmetic over schedules.

Every instant gets an outcome. Each job keeps a cursor (the moment up to which
its instants are accounted for), so a worker that starts after an outage catches
up: the most recent missed instant runs once, late, if it is within the job's
misfire grace; older ones are recorded MISSED. A (job, instant) that cannot be
settled yet (another worker holds the lock, an upstream has not finished) stays
pending until it settles or the job's next instant makes it MISSED.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from app.core.job import ConfiguredJob

# A gap longer than this many instants is logged, not backfilled row by row.
MAX_MISSED_SCAN = 1000
# How late an instant may start and still count as on time, whatever its grace.
ON_TIME_SLACK_S = 1.0
EXPIRED_REASON = "missed: not settled before the job's next instant"


@dataclass(frozen=True)
class PendingInstant:
    """A (job, instant) to settle; obsolete once `expires_at` (its next instant) has come.

    `retry`: a failed run of the instant is due again, rather than its first run.
    """

    job: ConfiguredJob
    scheduled_for: datetime
    expires_at: datetime
    retry: bool = False

    @property
    def key(self) -> tuple[str, datetime]:
        """(job name, instant): at most one pending entry per key."""
        return self.job.name, self.scheduled_for

    def expired(self, now: datetime) -> bool:
        """True once the job's next instant has come: too late to run this one."""
        return now >= self.expires_at


class Missed(NamedTuple):
    """A (job, instant) no worker ran, and why: recorded as a MISSED run."""

    job_name: str
    scheduled_for: datetime
    reason: str


@dataclass(frozen=True)
class Gap:
    """Instants of a job from `first` to before `until` that are neither run nor recorded."""

    job_name: str
    first: datetime
    until: datetime


@dataclass
class Plan:
    """What one tick does before it claims anything.

    `queue`: instants to add to the pending queue. `missed`: instants to record
    MISSED. `expired`: pending instants whose next instant came first. `cursors`:
    where each job's accounting stands once `missed` is recorded. `something_due`:
    some job had an instant since its cursor (retries are scanned then).
    """

    queue: list[PendingInstant] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    expired: list[PendingInstant] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    cursors: dict[str, datetime] = field(default_factory=dict)
    something_due: bool = False


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


def latest_instants(jobs: Iterable[ConfiguredJob], now: datetime) -> list[PendingInstant]:
    """Each job's latest instant at or before `now`, in the order given."""
    found = []
    for configured in jobs:
        instant = configured.schedule.latest_at_or_before(now)
        found.append(PendingInstant(configured, instant, configured.schedule.next_after(instant)))
    return found


def plan_tick(
    jobs: Sequence[ConfiguredJob],
    cursors: Mapping[str, datetime],
    pending: Sequence[PendingInstant],
    now: datetime,
) -> Plan:
    """Plan a tick at `now` for the enabled `jobs`, given their cursors and the pending queue.

    A job without a cursor starts from `now`: nothing before it is due.
    """
    plan = Plan(expired=[item for item in pending if item.expired(now)])
    queued = {item.key for item in pending}
    for configured in jobs:
        after = cursors.get(configured.name, now)
        plan.cursors[configured.name] = now
        instants = instants_between(configured, after, now)
        if not instants:
            continue
        plan.something_due = True
        if len(instants) == MAX_MISSED_SCAN:
            first = configured.schedule.next_after(after)
            if first < instants[0]:
                plan.gaps.append(Gap(configured.name, first, instants[0]))
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
                plan.queue.append(PendingInstant(configured, latest, expires_at))
        plan.missed += [Missed(configured.name, instant, reason) for instant in older]
    return plan


def missed_for(expired: Iterable[PendingInstant]) -> list[Missed]:
    """The MISSED records of expired first runs (an expired retry keeps its FAILURE)."""
    return [
        Missed(item.job.name, item.scheduled_for, EXPIRED_REASON)
        for item in expired
        if not item.retry
    ]


def next_instant(jobs: Iterable[ConfiguredJob], after: datetime) -> datetime | None:
    """The earliest instant of any of `jobs` strictly after `after`."""
    instants = [j.schedule.next_after(after) for j in jobs]
    return min(instants) if instants else None


def upstreams_at(item: PendingInstant, jobs_by_name: Mapping[str, ConfiguredJob]) -> list[str]:
    """The run_after jobs that take part in this instant: enabled and firing at it too."""
    names = []
    for name in item.job.job.run_after:
        upstream = jobs_by_name[name]
        fires = upstream.schedule.latest_at_or_before(item.scheduled_for) == item.scheduled_for
        if upstream.enabled and fires:
            names.append(name)
    return names


def queue_order(item: PendingInstant, order: Mapping[str, int]) -> tuple[datetime, int]:
    """Pending instants run oldest first, and in registration order within an instant."""
    return item.scheduled_for, order[item.job.name]


def wake_at(
    now: datetime,
    *,
    deadlines: Iterable[datetime | None],
    poll_s: float | None,
    liveness_s: float,
) -> datetime:
    """When the loop wakes next: the earliest deadline (an instant, a retry, a sweep), a
    poll of the pending queue, or a wake-up to show it is alive."""
    candidates = [t for t in deadlines if t is not None]
    candidates.append(now + timedelta(seconds=liveness_s))
    if poll_s is not None:
        candidates.append(now + timedelta(seconds=poll_s))
    return min(candidates)


def without(
    items: Sequence[PendingInstant], removed: Sequence[PendingInstant]
) -> list[PendingInstant]:
    """`items` without the very objects in `removed` (compared by identity)."""
    if not removed:
        return list(items)
    return [item for item in items if not any(item is gone for gone in removed)]


def take_window(
    queue: deque[PendingInstant], now: datetime, *, size: int
) -> tuple[list[PendingInstant], list[PendingInstant]]:
    """Take up to `size` instants still worth running off the front of `queue`, and the
    expired ones met on the way: (window, expired)."""
    window: list[PendingInstant] = []
    expired: list[PendingInstant] = []
    while queue and len(window) < size:
        item = queue.popleft()
        (expired if item.expired(now) else window).append(item)
    return window, expired
