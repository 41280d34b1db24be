"""Observing how runs and claims ended: one log line, the metrics, and the alerts.

The run path calls `observe_outcome` once per run it claimed, and `observe_claim`
once per claim; nothing else in the runtime logs an outcome or touches a metric.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from app.config import Settings
from app.core.claims import Claim, ClaimResult, Skip, Wait
from app.core.job import ConfiguredJob
from app.core.outcomes import Outcome, RunStatus
from app.core.planning import Gap, Missed
from app.errors import DatabaseError
from app.ops import metrics
from app.ops.alerts import after_run
from app.store.facade import Store
from app.store.runs import Finished

logger = logging.getLogger(__name__)

SKEW_CHECK_EVERY = timedelta(hours=1)


def observe_schedules(jobs: Sequence[ConfiguredJob], now: datetime) -> None:
    """At start-up, one line per job: disabled, or its schedule and next instant."""
    for configured in jobs:
        if not configured.enabled:
            logger.info(
                "job %s is disabled by its _ENABLED flag",
                configured.name,
                extra={"event": "job_disabled", "job": configured.name},
            )
            continue
        if configured.job.manual_only:
            logger.info(
                "job %s runs only by hand: its parameters have no defaults",
                configured.name,
                extra={"event": "job_manual_only", "job": configured.name},
            )
            continue
        logger.info(
            "job %s: schedule %r, next at %s",
            configured.name,
            configured.schedule.expression,
            configured.schedule.next_after(now).isoformat(),
            extra={"event": "job_scheduled", "job": configured.name},
        )


def publish_job_metrics(
    store: Store, worker_id: str, jobs: Sequence[ConfiguredJob], now: datetime
) -> None:
    """Identity, periods, and each job's streak from the table (for dead-man alerts)."""
    metrics.describe_worker(worker_id)
    streaks = store.streaks([j.name for j in jobs])
    for configured in jobs:
        following = configured.schedule.next_after(now)
        streak = streaks.get(configured.name)
        period_s = (configured.schedule.next_after(following) - following).total_seconds()
        if streak is None:
            metrics.describe_job(configured.name, period_s=period_s)
            continue
        metrics.describe_job(
            configured.name,
            period_s=period_s,
            # A job that never succeeded counts from its registration, so the
            # dead-man alarm also fires for a job that has never run.
            last_success_at=streak.last_success_at or streak.registered_at,
            failures=streak.failures,
            last_failure_at=streak.last_failure_at,
        )


class ClockSkewCheck:
    """Warns, at most once an hour, when the worker's clock and the database's disagree."""

    def __init__(self, store: Store, clock: Callable[[], datetime], *, max_skew_s: float) -> None:
        self._store = store
        self._clock = clock
        self._max_skew_s = max_skew_s
        self._checked_at: datetime | None = None

    def check(self, now: datetime) -> None:
        """Compare the clocks, unless they were compared within the hour before `now`."""
        if self._checked_at is not None and now - self._checked_at < SKEW_CHECK_EVERY:
            return
        self._checked_at = now
        before = self._clock()
        database_clock = self._store.database_now()
        after = self._clock()
        skew_s = (before + (after - before) / 2 - database_clock).total_seconds()
        if abs(skew_s) > self._max_skew_s:
            logger.warning(
                "this worker's clock is %+.1fs off the database's (MAX_CLOCK_SKEW_SECONDS=%g): "
                "schedules follow this clock, leases the database's; fix NTP",
                skew_s,
                self._max_skew_s,
                extra={"event": "clock_skew", "skew_s": skew_s},
            )


def observe_outcome(
    store: Store,
    settings: Settings,
    claim: Claim,
    ending: Outcome,
    *,
    duration_ms: float,
    finished: Finished,
    fields: dict[str, Any],
) -> None:
    """Log how a run this worker claimed ended; if it landed, count it and update alerts."""
    _log_outcome(store, claim, ending, duration_ms=duration_ms, finished=finished, fields=fields)
    if finished.landed:
        metrics.run_ended(claim.job_name, ending.status, duration_ms)
        after_run(
            store,
            settings,
            job_name=claim.job_name,
            status=ending.status,
            alert_open=claim.alert_open,
            worker_id=claim.worker_id,
        )


def observe_unstarted_failure(
    store: Store, settings: Settings, job_name: str, worker_id: str
) -> None:
    """A FAILURE whose body never started (its pre-check raised, its claim was given up).

    It counts towards the job's failing streak like any other, and may open its alert.
    """
    metrics.run_ended(job_name, RunStatus.FAILURE, 0.0)
    after_run(
        store,
        settings,
        job_name=job_name,
        status=RunStatus.FAILURE,
        alert_open=False,  # read only on SUCCESS
        worker_id=worker_id,
    )


def observe_claim(job_name: str, claimed: ClaimResult) -> None:
    """Count a claim that started no run, by why; and the SKIPPED rows it wrote."""
    if claimed is None:
        metrics.claim_skipped(job_name, "locked")
    elif isinstance(claimed, Wait):
        metrics.claim_skipped(job_name, "upstream")
    elif isinstance(claimed, Skip):
        metrics.claim_skipped(job_name, claimed.kind)
        if claimed.recorded:
            metrics.outcomes_recorded(job_name, "skipped")


def observe_missed(recorded: Mapping[str, int], missed: Sequence[Missed]) -> int:
    """Count and log the MISSED runs written (`recorded`, per job) of `missed`; the total."""
    instants: dict[str, list[datetime]] = {}
    for m in missed:
        instants.setdefault(m.job_name, []).append(m.scheduled_for)
    for job_name, count in recorded.items():
        metrics.outcomes_recorded(job_name, "missed", count)
        logger.warning(
            "recorded %d missed instants of %s (%s .. %s)",
            count,
            job_name,
            min(instants[job_name]).isoformat(),
            max(instants[job_name]).isoformat(),
            extra={"event": "instants_missed", "job": job_name, "count": count},
        )
    return sum(recorded.values())


def observe_gaps(gaps: Iterable[Gap], *, max_scanned: int) -> None:
    """Say which instants of a too-long gap are neither run nor recorded."""
    for gap in gaps:
        logger.warning(
            "%s has more than %d missed instants; those from %s to before %s are not recorded",
            gap.job_name,
            max_scanned,
            gap.first.isoformat(),
            gap.until.isoformat(),
            extra={
                "event": "instants_not_recorded",
                "job": gap.job_name,
                "from": gap.first.isoformat(),
                "until": gap.until.isoformat(),
            },
        )


def _log_fenced(store: Store, claim: Claim, ending: Outcome, extra: dict[str, Any]) -> None:
    """A late finish after a takeover: say loudly what is recorded instead, and who runs now."""
    try:
        takeover = store.takeover_of(claim.run_id, claim.job_name)
    except DatabaseError:
        takeover = None
    recorded = f"{takeover.status}: {takeover.error_message}" if takeover else "unknown"
    current = takeover.current_run_id if takeover else None
    logger.error(
        "run %s ended %s but was no longer ours, so nothing was recorded; it stays %s; "
        "run %s has taken the job over",
        claim.run_id,
        ending.status,
        recorded,
        current if current is not None else "(none yet)",
        extra={
            "event": "run_fenced",
            "status": str(ending.status),
            "taken_over_by_run_id": current,
            **extra,
        },
    )


def _log_outcome(
    store: Store,
    claim: Claim,
    ending: Outcome,
    *,
    duration_ms: float,
    finished: Finished,
    fields: dict[str, Any],
) -> None:
    """One line for how the run ended: succeeded, failed, or fenced off by a takeover."""
    extra = {"duration_ms": round(duration_ms, 1), **fields}
    if not finished.landed:
        _log_fenced(store, claim, ending, extra)
    elif ending.status == RunStatus.SUCCESS:
        logger.info(
            "run %s succeeded in %.0f ms%s",
            claim.run_id,
            duration_ms,
            f": {json.dumps(ending.result)}" if ending.result else "",
            extra={"event": "run_succeeded", **extra},
        )
    else:
        retry = f"; retry at {finished.retry_at.isoformat()}" if finished.retry_at else ""
        logger.error(
            "run %s failed after %.0f ms: %s%s",
            claim.run_id,
            duration_ms,
            ending.error,
            retry,
            extra={"event": "run_failed", "error": ending.error, **extra},
        )
